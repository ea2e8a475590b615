"""Write-behind: published events reach the store in batches, off the publish path.

:class:`WriteBehind` is what the node talks to when it has a store. Writes
go through its ordered queue (:mod:`.write_queue`, drained by :mod:`.write_loop`): memory stays bounded by
``max_pending`` and publishers get ``UNAVAILABLE`` once it is full, before
anything is published; a database that goes away is retried with backoff
until it is back, so nothing acknowledged is lost while the process lives,
and the queue is flushed on shutdown. Reads (``query``, ``read_after``) merge
the events still waiting in the queue, so history never has a hole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import Unavailable
from ..core.types import EventMessage, Position
from .base import HistoryQuery, RoomStore, matches, page_of
from .write_loop import WriteLoop
from .write_queue import EpochOf

__all__ = ["EpochOf", "WriteBehind"]


class WriteBehind(WriteLoop):
    """The store as the node sees it: queued writes, reads that include the queue."""

    # EventStore -----------------------------------------------------------------
    async def append(self, messages: list[EventMessage], epochs: Mapping[str, str]) -> None:
        """Write now, bypassing the queue (the queue itself uses ``store.append``)."""
        await self.store.append(messages, epochs)

    async def query(self, query: HistoryQuery) -> list[EventMessage]:
        # snapshot the queue first: an event written meanwhile is then in one of the two
        waiting = [i.message for i in self._pending if i.message is not None
                   and matches(i.message, query)]
        return page_of(await self.store.query(query) + waiting, query)

    async def read_after(self, room: str, after: int, limit: int) -> list[EventMessage]:
        waiting = [i.message for i in self._pending if i.message is not None
                   and i.message.room == room and i.message.seq > after]
        found = await self.store.read_after(room, after, limit) + waiting
        return sorted({m.seq: m for m in found}.values(), key=lambda m: m.seq)[:limit]

    async def positions(self) -> dict[str, Position]:
        return await self.store.positions()

    async def position_of(self, room: str) -> Position | None:
        """The room's stored position, counting events still queued here (None: never stored)."""
        lookup = getattr(self.store, "position", None)  # one row, where the store offers it
        stored = await lookup(room) if lookup is not None else (await self.store.positions()).get(room)
        if stored is None:
            return None
        queued = [i.message.seq for i in self._pending if i.message is not None and i.message.room == room]
        return Position(max([stored.seq, *queued]), stored.epoch)

    async def delete_room(self, room: str) -> None:
        """Drop the room's queued events and queue the deletion (in order: nothing resurrects)."""
        self.purge(room)
        store = self.store

        async def delete() -> None:
            await store.delete_room(room)
            self.forget(room)

        self.enqueue(delete)

    # runtime rooms and room state ---------------------------------------------------
    @property
    def rooms(self) -> RoomStore | None:
        """The store's room capability, if it has one."""
        return self.store if isinstance(self.store, RoomStore) else None

    def _room_store(self) -> RoomStore:
        rooms = self.rooms
        if rooms is None:
            raise RuntimeError(f"{type(self.store).__name__} does not store rooms (RoomStore)")
        return rooms

    def _check_healthy(self) -> None:
        if not self.healthy:
            raise Unavailable("the database is unavailable; retry later")

    async def save_room(self, room: str, spec: dict[str, Any]) -> None:
        """Queue a runtime room's spec (in order with its deletion and events)."""
        rooms = self._room_store()
        self._check_healthy()

        async def save() -> None:
            await rooms.save_room(room, spec)

        self.enqueue(save)

    async def set_state(self, room: str, state: Any) -> None:
        """Store the room's state and wait for the commit."""
        rooms = self._room_store()
        self._check_healthy()

        async def save() -> None:
            await rooms.set_state(room, state)

        await self.wait(self.enqueue(save), f"the state of room '{room}'")

    async def get_state(self, room: str) -> Any:
        rooms = self._room_store()
        try:
            return await rooms.get_state(room)
        except Exception as exc:
            raise Unavailable(f"the database is unavailable: {exc}") from None

    async def load_rooms(self) -> dict[str, dict[str, Any]]:
        rooms = self.rooms
        return {} if rooms is None else await rooms.load_rooms()
