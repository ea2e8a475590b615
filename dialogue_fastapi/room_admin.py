"""Creating and deleting rooms at runtime, by the application or by clients."""

from __future__ import annotations

from .brokers.base import Broker
from .config import ROOM_ID_PATTERN, DialogueConfig, Hooks, RoomConfig
from .errors import BadRequest, EventNotAllowed, Forbidden, RoomExists
from .events import EventDefinition
from .hooks import fire
from .rooms import Room, RoomRegistry, room_spec
from .stores.base import EventStore
from .types import Identity


class RoomAdmin:
    """Runtime room lifecycle, announced to every node and client."""

    def __init__(
        self, config: DialogueConfig, registry: RoomRegistry, broker: Broker,
        store: EventStore | None, hooks: Hooks,
    ) -> None:
        self._config = config
        self._registry = registry
        self._broker = broker
        self._store = store
        self._hooks = hooks
        self.events: dict[str, EventDefinition] = {d.name: d for d in config.events}
        for room_config in config.rooms.values():
            for definition in room_config.events:
                self.events.setdefault(definition.name, definition)

    def check_id(self, room_id: object) -> str:
        limit = self._config.max_room_id_length
        if not isinstance(room_id, str) or not room_id:
            raise BadRequest("'room' must be a non-empty string")
        if len(room_id) > limit:
            raise BadRequest(f"room id is {len(room_id)} characters; the limit is {limit}")
        if not ROOM_ID_PATTERN.match(room_id):
            raise BadRequest("a room id may only use letters, digits and _.:@-")
        return room_id

    def config_from_client(
        self, name: str, description: str | None, max_size: int | None,
        events: list[str] | None, *, presence_events: bool = False,
        sync_history_on_join: int = 0,
    ) -> RoomConfig:
        """A client's create_room may only name events the application defined."""
        unknown = [e for e in events or [] if e not in self.events]
        if unknown:
            raise EventNotAllowed(
                f"unknown events {unknown}; defined: {sorted(self.events) or 'none'}"
            )
        return RoomConfig(
            name=name, description=description, max_size=max_size,
            events=[self.events[e] for e in events or []],
            presence_events=presence_events, sync_history_on_join=sync_history_on_join,
        )

    async def create(
        self, room_id: str, config: RoomConfig, created_by: str | None
    ) -> Room:
        self.check_id(room_id)
        if room_id in self._registry:
            raise RoomExists(f"room '{room_id}' already exists")
        room = Room(room_id, config, created_by, runtime=True)
        self._registry.add(room)
        await self._broker.control({
            "type": "room_created", "spec": room_spec(room), "_room": room,
            "info": room.info(0),
        })
        await fire("on_room_created", self._hooks.on_room_created, room.id, created_by)
        return room

    async def delete(self, room_id: str, by: Identity | None) -> None:
        """Delete a room; ``by`` is the client asking (None: the application)."""
        room = self._registry.get(room_id)
        if by is not None:
            if not room.runtime:
                raise Forbidden(f"room '{room_id}' is declared in config; clients cannot delete it")
            if room.created_by != by.user_id:
                raise Forbidden(f"only the creator of room '{room_id}' can delete it")
        await self._broker.control({"type": "room_deleted", "room": room_id})
        self._registry.remove(room_id)
        await self._broker.drop_room(room_id)
        if self._store is not None:
            await self._store.delete_room(room_id)
        await fire("on_room_deleted", self._hooks.on_room_deleted, room_id)
