"""The one room lookup and the one access rule (``before_join``) of every transport."""

from __future__ import annotations

from ..core.errors import Forbidden
from ..core.rules import check_room_id
from ..rooms.authorize import admit
from ..rooms.registry import Room
from ..runtime import Runtime
from .caller import Caller


class Access:
    """Resolves room ids and asks ``before_join`` for callers that are not members."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def room(self, room_id: object) -> Room:
        """The room of an id a caller names: BAD_REQUEST for a malformed id, else
        ROOM_NOT_FOUND. (Room families will resolve here too.)"""
        found = self._rt.registry.find(room_id) if isinstance(room_id, str) else None
        if found is not None:  # a known room's id was checked when the room was made
            return found
        return self._rt.registry.get(check_room_id(room_id, self._rt.config.max_room_id_length))

    async def may_see(self, caller: Caller, room: Room) -> None:
        """Presence, details, history and REST publishes: a member of the room, the
        application, or whoever ``before_join`` admits; else FORBIDDEN."""
        if caller.is_server:
            self._rt.instances.touch(room)  # the application is not limited
            return
        if caller.member_of(room.id):
            return
        await admit(caller.identity, room, self._rt.hooks.before_join, refusal="FORBIDDEN")
        await self._rt.instances.hold(room, caller.user_id)  # refused above: nothing held

    def check_channel(self, caller: Caller, room: Room) -> None:
        """A live connection may only use a room over the channels the room lists."""
        if caller.conn is not None and caller.transport not in room.config.channels:
            raise Forbidden(f"room '{room.id}' is not available over {caller.transport}")
