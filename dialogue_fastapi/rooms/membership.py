"""Joining and leaving rooms: checks, hooks, presence, replay, then live events.

Join order (refusals have no side effects): channel -> subscriptions valid ->
size pre-check -> ``before_join`` -> atomic size reservation -> attach
(live events buffer) -> position and replay -> reply -> release -> hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..brokers.base import Broker
from ..core.config import DialogueConfig, Hooks
from ..core.errors import (
    BadRequest,
    EventNotAllowed,
    Forbidden,
    RoomFull,
)
from ..core.hooks import fire
from ..core.metrics import NO_METRICS, Metrics
from ..core.outages import is_outage
from ..core.types import EventMessage, Position
from ..node.connection import Connection
from ..node.hub import Hub
from .authorize import admit
from .history import HistoryReader
from .instances import LiveInstances
from .registry import Room, RoomRegistry

logger = logging.getLogger("dialogue_fastapi")


class MembershipService:
    """Join/leave for connections of any transport."""

    def __init__(
        self, config: DialogueConfig, broker: Broker, hub: Hub, registry: RoomRegistry,
        history: HistoryReader, hooks: Hooks, instances: LiveInstances,
    ) -> None:
        self._config = config
        self._broker = broker
        self._hub = hub
        self._registry = registry
        self._history = history
        self._hooks = hooks
        self._instances = instances
        self.metrics: Metrics = NO_METRICS  # set by the runtime

    def subscriptions(self, room: Room, requested: Any) -> frozenset[str] | None:
        """Resolve a join's ``subscriptions`` (list, ``"*"`` or None for the room default)."""
        if requested is None:
            defaults = room.config.default_subscriptions
            return None if defaults is None else frozenset(defaults)
        if requested == "*" or requested == ["*"]:
            return None
        names = frozenset(requested)
        allowed = room.config.event_names()
        unknown = sorted(n for n in names if allowed and n not in allowed)
        if unknown:
            raise EventNotAllowed(f"room '{room.id}' has no events {unknown}")
        return names

    async def join(
        self, conn: Connection, room_id: str, *, subscriptions: Any = None,
        since: Position | None = None, history: int | None = None,
        send_reply: Callable[[dict[str, Any]], None],
    ) -> None:
        """Join and queue the reply before any live event of the room."""
        room = self._registry.get(room_id)
        if conn.transport.kind not in room.config.channels:
            raise Forbidden(f"room '{room_id}' is not available over {conn.transport.kind}")
        subs = self.subscriptions(room, subscriptions)
        if room_id in conn.rooms:
            conn.rooms[room_id].subscriptions = subs
            position = await self._broker.position(room_id)
            send_reply(self._result(room, subs, position, [], since, None,
                                    await self._broker.presence.count(room_id)))
            return
        if len(conn.rooms) >= self._config.max_rooms_per_connection:
            raise Forbidden(f"a connection may join at most "
                            f"{self._config.max_rooms_per_connection} rooms")
        max_size = room.config.max_size
        if max_size is not None and await self._broker.presence.count(room_id) >= max_size:
            raise RoomFull(f"room '{room_id}' is full ({max_size})")
        await admit(conn.identity, room, self._hooks.before_join, refusal="JOIN_DENIED")
        await self._instances.hold(room, conn.user_id)
        if not await self._broker.presence.join(room_id, conn.entry(), max_size):
            raise RoomFull(f"room '{room_id}' is full ({max_size})")
        try:  # a join that fails from here leaves no presence entry and no pending buffer
            membership = await self._hub.attach(conn, room_id, subs)
            position, events, recovered = await self._replay(room, subs, since, history)
            size = await self._broker.presence.count(room_id)
            send_reply(self._result(room, subs, position, events, since, recovered, size))
            if since is not None:
                self.metrics.recovered(conn.transport.kind, bool(recovered), len(events))
        except BaseException:
            await self._undo_join(conn, room_id)
            raise
        self._hub.release(conn, membership, position.seq)
        await fire("on_joined", self._hooks.on_joined, conn.identity, room_id)
        if room.config.presence_events:
            await self._broker.control({"type": "presence", "op": "presence_join",
                                        "room": room_id, **conn.entry().to_dict()})

    async def _undo_join(self, conn: Connection, room_id: str) -> None:
        try:
            await self._hub.detach(conn, room_id)
            await self._broker.presence.leave(room_id, conn.client_id)
        except Exception as exc:  # the broker fixes its presence when it is back
            logger.warning("undoing the join of %s to %s failed: %s", conn.client_id, room_id, exc,
                           extra={"client_id": conn.client_id, "room": room_id})

    async def _replay(
        self, room: Room, subs: frozenset[str] | None, since: Position | None,
        history: int | None,
    ) -> tuple[Position, list[EventMessage], bool | None]:
        position = await self._broker.position(room.id)
        if since is not None:
            recovered = await self._history.recover(room, since)
            if recovered is None:
                return position, [], False
            last = recovered[-1].seq if recovered else position.seq
            wanted = [m for m in recovered if subs is None or m.event in subs]
            return Position(max(last, position.seq), position.epoch), wanted, True
        depth = history
        if depth is None:
            sync = room.config.sync_history_on_join
            depth = (50 if sync is True else int(sync)) if sync else 0
        if depth < 0 or depth > 1000:
            raise BadRequest("history must be between 0 and 1000")
        if not depth:
            return position, [], None
        page = await self._history.page(
            room, limit=depth, before=position.seq + 1,
            subscriptions=None if subs is None else subs.__contains__,
        )
        return position, page, None

    def _result(
        self, room: Room, subs: frozenset[str] | None, position: Position,
        events: list[EventMessage], since: Position | None, recovered: bool | None,
        size: int,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "room": room.info(size),
            "subscriptions": "*" if subs is None else sorted(subs),
            "position": position.to_dict(),
            "events": [m.to_wire() for m in events],
        }
        if since is not None:
            result["recovered"] = bool(recovered)
        return result

    async def leave(self, conn: Connection, room_id: str, *, notify: bool = True) -> bool:
        """Leave a room; False if the connection was not in it."""
        if not await self._hub.detach(conn, room_id):
            return False
        room = self._registry.find(room_id)
        if room is not None:
            self._instances.touch(room)  # its idle clock starts when the last member leaves
        try:
            await self._broker.presence.leave(room_id, conn.client_id)
        except Exception as exc:  # left here; the broker fixes its presence when it is back
            if not is_outage(exc):
                raise
            logger.warning("presence of %s in %s not removed: backend unavailable (%s)",
                           conn.client_id, room_id, exc,
                           extra={"client_id": conn.client_id, "room": room_id})
        if notify:
            await fire("on_left", self._hooks.on_left, conn.identity, room_id)
            if room is not None and room.config.presence_events:
                await self._broker.control({"type": "presence", "op": "presence_leave",
                                            "room": room_id, **conn.entry().to_dict()})
        return True
