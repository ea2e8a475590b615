"""Creating and deleting rooms at runtime, by the application or by clients.

With a store that keeps rooms, a runtime room's declarative settings (the
protocol's room spec plus ``durable`` and ``retention``) are saved through
the write-behind queue and come back on the next start (:meth:`RoomAdmin.restore`).
Callables (room middleware) cannot be stored: a restored room has none.
"""

from __future__ import annotations

import logging
from typing import Any

from ..brokers.base import Broker
from ..core.config import DialogueConfig, Hooks, Retention, RoomConfig
from ..core.errors import EventNotAllowed, Forbidden, RoomExists
from ..core.events import EventDefinition
from ..core.hooks import fire
from ..core.rules import check_room_id
from ..core.types import Identity
from ..stores.write_behind import WriteBehind
from .registry import Room, RoomRegistry, room_from_spec, room_spec
from .state import RoomStates

logger = logging.getLogger("dialogue_fastapi")


def stored_spec(room: Room) -> dict[str, Any]:
    """What the store keeps of a runtime room."""
    retention = room.config.retention
    return {**room_spec(room), "durable": room.config.durable,
            "retention": None if retention is None else retention.model_dump()}


def room_from_stored(spec: dict[str, Any], events: dict[str, EventDefinition]) -> Room:
    room = room_from_spec(spec, events)
    retention = spec.get("retention")
    config = room.config.model_copy(update={
        "durable": spec.get("durable"),
        "retention": Retention(**retention) if retention else None,
    })
    return Room(room.id, config, room.created_by, runtime=True)


class RoomAdmin:
    """Runtime room lifecycle, announced to every node and client."""

    def __init__(
        self, config: DialogueConfig, registry: RoomRegistry, broker: Broker,
        writer: WriteBehind | None, hooks: Hooks, states: RoomStates | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._broker = broker
        self._writer = writer
        self._states = states
        self._hooks = hooks
        self.events: dict[str, EventDefinition] = {d.name: d for d in config.events}
        for room_config in config.rooms.values():
            for definition in room_config.events:
                self.events.setdefault(definition.name, definition)

    def check_id(self, room_id: object) -> str:
        return check_room_id(room_id, self._config.max_room_id_length)

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
            raise RoomExists(f"room '{room_id}' already exists or belongs to a room family")
        room = Room(room_id, config, created_by, runtime=True)
        if self._writer is not None and self._writer.rooms is not None:
            await self._writer.save_room(room_id, stored_spec(room))  # UNAVAILABLE: nothing created
        self._registry.add(room)
        await self._broker.control({
            "type": "room_created", "spec": room_spec(room), "info": room.info(0),
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
        if self._writer is not None:
            await self._writer.delete_room(room_id)
        if self._states is not None:
            self._states.forget(room_id)
        await fire("on_room_deleted", self._hooks.on_room_deleted, room_id)

    async def restore(self) -> list[Room]:
        """Bring back the runtime rooms the store keeps (config rooms win over a stored one)."""
        if self._writer is None:
            return []
        restored: list[Room] = []
        for room_id, spec in (await self._writer.load_rooms()).items():
            if room_id in self._registry:
                continue
            missing = [e for e in spec.get("events", []) if e not in self.events]
            if missing:  # restoring it without them could turn it into an any-event room
                logger.warning("runtime room %r is not restored: its events %s are no longer "
                               "defined (pass them in events=[...])", room_id, missing)
                continue
            room = room_from_stored(spec, self.events)
            self._registry.add(room)
            restored.append(room)
        return restored
