"""Joining, leaving and per-event subscriptions of live connections (WebSocket, SSE)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.errors import BadRequest, NotInRoom
from ..core.rules import check_event_name
from ..node.connection import Connection, Membership
from ..runtime import Runtime
from .access import Access
from .requests import EventSelection, JoinRequest

Reply = Callable[[dict[str, Any]], None]


class Members:
    """Subscriptions are capped per connection and room (``max_subscriptions``) and, in a
    room with declared events, limited to those events (``EVENT_NOT_ALLOWED``), so a
    reply, which carries the connection's subscriptions in the room, stays small."""

    def __init__(self, rt: Runtime, access: Access) -> None:
        self._rt = rt
        self._access = access

    async def join(self, conn: Connection, request: JoinRequest, send_reply: Reply) -> None:
        room = self._access.room(request.room)
        self._check_names(request.subscriptions)
        await self._rt.membership.join(conn, room.id, subscriptions=request.subscriptions,
                                       since=request.since, history=request.history,
                                       send_reply=send_reply)

    async def leave(self, conn: Connection, room_id: str) -> None:
        if not await self._rt.membership.leave(conn, self._access.room(room_id).id):
            raise NotInRoom(f"not in room '{room_id}'")

    def subscribe(self, conn: Connection, room_id: str, events: EventSelection) -> dict[str, Any]:
        membership = self._joined(conn, room_id, "subscribe")
        self._check_names(events)
        resolved = self._rt.membership.subscriptions(self._access.room(room_id), events)
        if resolved is not None and membership.subscriptions is not None:
            self._cap(len(membership.subscriptions | resolved))
        membership.subscribe(resolved)
        return membership.describe()

    def unsubscribe(self, conn: Connection, room_id: str, events: list[str]) -> dict[str, Any]:
        membership = self._joined(conn, room_id, "unsubscribe")
        self._check_names(events)
        names = frozenset(events)
        # only names the room can have: a room with declared events refuses others
        self._rt.membership.subscriptions(self._access.room(room_id), sorted(names))
        if membership.subscriptions is None:
            self._cap(len(membership.excluded | names))
        membership.unsubscribe(names)
        return membership.describe()

    def _joined(self, conn: Connection, room_id: str, action: str) -> Membership:
        self._access.room(room_id)
        membership = conn.rooms.get(room_id)
        if membership is None:
            raise NotInRoom(f"join room '{room_id}' before you {action}")
        return membership

    def _check_names(self, events: EventSelection) -> None:
        if events is None or events == "*":
            return
        self._cap(len(events))
        for name in events:
            if name != "*":
                check_event_name(name)

    def _cap(self, count: int) -> None:
        most = self._rt.config.max_subscriptions
        if count > most:
            raise BadRequest(f"{count} event names in one room's subscriptions; the limit is "
                             f"{most}", limit=most)

