"""``persistence="memory://"``: an in-process store, for tests and as a reference."""

from __future__ import annotations

import bisect

from ..types import EventMessage
from .base import HistoryQuery


class MemoryStore:
    """Keeps every event in memory, per room, ordered by seq."""

    def __init__(self) -> None:
        self._rooms: dict[str, list[EventMessage]] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def append(self, messages: list[EventMessage]) -> None:
        for message in messages:
            events = self._rooms.setdefault(message.room, [])
            if events and events[-1].seq >= message.seq:
                seqs = [e.seq for e in events]
                index = bisect.bisect_left(seqs, message.seq)
                if index < len(events) and events[index].seq == message.seq:
                    continue
                events.insert(index, message)
            else:
                events.append(message)

    async def query(self, query: HistoryQuery) -> list[EventMessage]:
        matched = [m for m in self._rooms.get(query.room, []) if _matches(m, query)]
        if query.after is not None:
            return matched[: query.limit]
        return matched[-query.limit:] if query.limit else []

    async def read_after(self, room: str, after: int, limit: int) -> list[EventMessage]:
        return [m for m in self._rooms.get(room, []) if m.seq > after][:limit]

    async def delete_room(self, room: str) -> None:
        self._rooms.pop(room, None)


def _matches(message: EventMessage, query: HistoryQuery) -> bool:
    if query.before is not None and message.seq >= query.before:
        return False
    if query.after is not None and message.seq <= query.after:
        return False
    if query.event is not None and message.event != query.event:
        return False
    if query.sender is not None and message.from_ != query.sender:
        return False
    if query.since_ts is not None and message.ts < query.since_ts:
        return False
    return query.until_ts is None or message.ts <= query.until_ts
