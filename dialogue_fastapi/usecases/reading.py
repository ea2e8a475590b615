"""History, presence and room details: what a caller may read of a room."""

from __future__ import annotations

from typing import Any

from ..core.errors import NotInRoom
from ..core.rules import check_event_name, check_int64, check_text
from ..core.types import EventMessage, Position, PresenceEntry
from ..runtime import Runtime
from .access import Access
from .caller import Caller
from .requests import HistoryRequest


class Reading:
    """A WebSocket must have joined a room to read its history (``NOT_IN_ROOM``); other
    callers and every presence or details read go through ``before_join``."""

    def __init__(self, rt: Runtime, access: Access) -> None:
        self._rt = rt
        self._access = access

    async def history(
        self, caller: Caller, request: HistoryRequest
    ) -> tuple[list[EventMessage], Position]:
        room = self._access.room(request.room)
        if caller.transport == "websocket" and not caller.member_of(room.id):
            raise NotInRoom(f"join room '{room.id}' before you read its history")
        await self._access.may_see(caller, room)
        for value, what in ((request.before, "before"), (request.after, "after"),
                            (request.since_ts, "since_ts"), (request.until_ts, "until_ts")):
            check_int64(value, what)
        if request.event is not None:
            check_event_name(request.event)
        check_text(request.sender, "sender")
        events = await self._rt.history.page(
            room, event=request.event, limit=request.limit, before=request.before,
            after=request.after, sender=request.sender, since_ts=request.since_ts,
            until_ts=request.until_ts,
        )
        return events, await self._rt.broker.position(room.id)

    async def presence(self, caller: Caller, room_id: str) -> list[PresenceEntry]:
        room = self._access.room(room_id)
        await self._access.may_see(caller, room)
        return await self._rt.broker.presence.members(room.id)

    async def room_info(self, caller: Caller, room_id: str) -> dict[str, Any]:
        room = self._access.room(room_id)
        await self._access.may_see(caller, room)
        return room.info(await self._rt.broker.presence.count(room.id))

    async def rooms(self, caller: Caller) -> list[dict[str, Any]]:
        """Every declared and runtime room with its size, and each room family (its pattern
        as id, ``family: true``); listing asks no ``before_join`` (docs/security.md)."""
        presence = self._rt.broker.presence
        rooms = [room.info(await presence.count(room.id)) for room in self._rt.registry.all()]
        for family in self._rt.registry.families():  # the pattern, never its instances
            info = family.info(0)
            info["family"] = True
            del info["params"]
            rooms.append(info)
        return rooms

    async def position(self, room_id: str) -> Position:
        room = self._access.room(room_id)
        self._rt.instances.touch(room)
        return await self._rt.broker.position(room.id)
