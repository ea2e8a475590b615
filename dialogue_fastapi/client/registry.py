"""The joined rooms of a client: live routing, rejoin after a reconnect, teardown."""

from __future__ import annotations

import asyncio
import contextlib
import functools

from .connection import Connection
from .errors import DialogueClientError
from .handlers import Frame, logger
from .notify import Notifier
from .room import ClientRoom

# Rejoin failures worth another connection; any other error drops the room.
TRANSIENT = frozenset({"UNAVAILABLE", "TIMEOUT", "INTERNAL", "RATE_LIMITED"})


class RoomRegistry:
    """Rooms by id; routes ``event`` and ``room_deleted`` frames to them."""

    def __init__(self, notify: Notifier) -> None:
        self.rooms: dict[str, ClientRoom] = {}
        self._notify = notify

    def forget(self, room: ClientRoom) -> None:
        """Drop ``room`` if it is the one registered under its id."""
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]

    def close_all(self) -> None:
        """End every room (the client closed for good)."""
        rooms, self.rooms = self.rooms, {}
        for room in rooms.values():
            room._close()

    async def route(self, frame: Frame) -> None:
        """Deliver a live event to its room; end a room the server deleted."""
        op, room_id = frame.get("op"), frame.get("room")
        room = self.rooms.get(room_id) if isinstance(room_id, str) else None
        if op == "event" and room is not None:
            await room._deliver(frame)
        elif op == "room_deleted" and room is not None:
            self.forget(room)
            room._close()

    async def rejoin(self, conn: Connection) -> bool:
        """Rejoin every room on a new connection; False if one failed transiently."""
        rooms = list(self.rooms.values())
        results = await asyncio.gather(*(self._rejoin_one(conn, room) for room in rooms))
        return all(results)

    async def _rejoin_one(self, conn: Connection, room: ClientRoom) -> bool:
        since = room._since()
        frame: Frame = {"op": "join", "room": room.id}
        if room.subscriptions is not None:
            frame["subscriptions"] = room.subscriptions
        if since is not None:
            frame["since"] = since
        try:
            await conn.request(frame, apply=functools.partial(room._apply_join, since=since))
        except DialogueClientError as exc:
            if exc.code in TRANSIENT:
                logger.warning("dialogue client: rejoining %r failed (%s)", room.id, exc)
                return False
            logger.warning("dialogue client: room %r lost on reconnect: %s", room.id, exc)
            self.forget(room)
            room._close()
            error = {"code": exc.code, "message": exc.message, **exc.extra}
            await self._notify.emit("error", {"op": "error", "room": room.id, "error": error})
            return True
        if room.excluded and not room.closed:  # "*" minus some: restore the exclusions
            with contextlib.suppress(DialogueClientError):
                await conn.request({"op": "unsubscribe", "room": room.id,
                                    "events": sorted(room.excluded)})
        if room.closed:  # left while the rejoin was in flight
            with contextlib.suppress(DialogueClientError):
                await conn.request({"op": "leave", "room": room.id})
        return True
