"""``persistence="memory://"``: an in-process store, for tests and as a reference.

It implements every capability (events, positions, runtime rooms and state,
retention, audit) in the simplest way, so it is also the example to read
when writing your own adapter.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Mapping
from typing import Any

from ..core.types import EventMessage, Position
from .base import AuditEntry, AuditQuery, HistoryQuery, Rejection, matches, page_of


class MemoryStore:
    """Keeps every event in memory, per room, ordered by seq."""

    def __init__(self) -> None:
        self._rooms: dict[str, list[EventMessage]] = {}
        self._positions: dict[str, Position] = {}
        self._specs: dict[str, dict[str, Any]] = {}
        self._state: dict[str, Any] = {}
        self._rejections: list[Rejection] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def append(self, messages: list[EventMessage], epochs: Mapping[str, str]) -> None:
        for message in messages:
            events = self._rooms.setdefault(message.room, [])
            if events and events[-1].seq >= message.seq:
                index = bisect.bisect_left([e.seq for e in events], message.seq)
                if index < len(events) and events[index].seq == message.seq:
                    continue
                events.insert(index, message)
            else:
                events.append(message)
            known = self._positions.get(message.room)
            epoch = epochs.get(message.room) or (known.epoch if known else "")
            last = max(message.seq, known.seq if known else 0)
            self._positions[message.room] = Position(last, epoch)

    async def query(self, query: HistoryQuery) -> list[EventMessage]:
        return page_of([m for m in self._rooms.get(query.room, []) if matches(m, query)], query)

    async def read_after(self, room: str, after: int, limit: int) -> list[EventMessage]:
        return [m for m in self._rooms.get(room, []) if m.seq > after][:limit]

    async def positions(self) -> dict[str, Position]:
        return dict(self._positions)

    async def position(self, room: str) -> Position | None:
        return self._positions.get(room)

    async def delete_room(self, room: str) -> None:
        for table in (self._rooms, self._positions, self._specs, self._state):
            table.pop(room, None)

    # RoomStore -----------------------------------------------------------------
    async def save_room(self, room: str, spec: dict[str, Any]) -> None:
        self._specs[room] = copy.deepcopy(spec)

    async def load_rooms(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._specs)

    async def set_state(self, room: str, state: Any) -> None:
        self._state[room] = copy.deepcopy(state)

    async def get_state(self, room: str) -> Any:
        return copy.deepcopy(self._state.get(room))

    # PrunableStore -------------------------------------------------------------
    async def prune(
        self, room: str, *, keep_last: int | None, older_than: int | None, limit: int
    ) -> int:
        events = self._rooms.get(room, [])
        last = events[-1].seq if events else 0
        doomed = [
            m.seq for m in events
            if (keep_last is not None and m.seq <= last - keep_last)
            or (older_than is not None and m.ts < older_than)
        ][:limit]
        gone = set(doomed)
        self._rooms[room] = [m for m in events if m.seq not in gone]
        return len(doomed)

    async def prune_rejections(self, older_than: int, limit: int) -> int:
        doomed = [r for r in self._rejections if r.ts < older_than][:limit]
        for rejection in doomed:
            self._rejections.remove(rejection)
        return len(doomed)

    # AuditStore ----------------------------------------------------------------
    async def record_rejections(self, rejections: list[Rejection]) -> None:
        self._rejections.extend(rejections)

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        if query.outcome in ("all", "accepted"):
            rooms = [query.room] if query.room is not None else list(self._rooms)
            found += [_accepted(m) for r in rooms for m in self._rooms.get(r, [])]
        if query.outcome in ("all", "rejected"):
            found += [_rejected(r) for r in self._rejections]
        found = [e for e in found if _audit_matches(e, query)]
        found.sort(key=lambda e: (e.ts, e.seq or 0))
        return found[-query.limit:] if query.limit > 0 else []


def _accepted(m: EventMessage) -> AuditEntry:
    return AuditEntry(m.ts, m.room, m.event, m.from_, True, seq=m.seq, meta=m.meta, data=m.data)


def _rejected(r: Rejection) -> AuditEntry:
    return AuditEntry(r.ts, r.room, r.event, r.sender, False, code=r.code, reason=r.reason,
                      meta=r.meta, data=r.data)


def _audit_matches(entry: AuditEntry, query: AuditQuery) -> bool:
    return (
        (query.room is None or entry.room == query.room)
        and (query.event is None or entry.event == query.event)
        and (query.sender is None or entry.sender == query.sender)
        and (query.since_ts is None or entry.ts >= query.since_ts)
        and (query.until_ts is None or entry.ts <= query.until_ts)
    )
