"""Reading a room's past: history pages and all-or-nothing recovery.

Hot history comes from the broker's window (newest ``history=N`` events per
event name); older events come from the event store when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence

from .brokers.base import Broker
from .config import DialogueConfig
from .events import EventDefinition
from .rooms import Room
from .stores.base import EventStore, HistoryQuery
from .types import EventMessage, Position


class HistoryReader:
    """History pages and recovery for rooms."""

    def __init__(
        self, broker: Broker, store: EventStore | None, config: DialogueConfig,
        max_recovery: int = 1000,
    ) -> None:
        self._broker = broker
        self._store = store
        self._config = config
        self._global_events = {d.name: d for d in config.events}
        self.max_recovery = max_recovery

    def depth(self, room: Room, event: str) -> int:
        """How many of ``event`` the room keeps in hot history."""
        definition: EventDefinition | None = room.config.event(event)
        if definition is None:
            definition = self._global_events.get(event)
        if definition is not None:
            return definition.history or 0
        return 0 if room.config.events else self._config.default_event_history

    async def page(
        self, room: Room, *, event: str | None = None, limit: int = 50,
        before: int | None = None, after: int | None = None,
    ) -> list[EventMessage]:
        """Events in ascending seq: newest ``limit``, or a page after/before a seq."""
        window = await self._broker.read(room.id, 0, partial=True) or []
        kept = [m for m in self._capped(room, window) if event is None or m.event == event]
        oldest_hot = window[0].seq if window else None
        if after is not None:
            result = [m for m in kept if m.seq > after][:limit]
            older = await self._from_store(room, event, limit, after=after, below=oldest_hot)
            return (older + result)[:limit]
        if before is not None:
            kept = [m for m in kept if m.seq < before]
        result = kept[-limit:] if limit else []
        missing = limit - len(result)
        if missing > 0:
            below = min(x for x in (before, oldest_hot) if x is not None) if (
                before is not None or oldest_hot is not None) else None
            result = await self._from_store(room, event, missing, before=below) + result
        return result

    async def _from_store(
        self, room: Room, event: str | None, limit: int, *, after: int | None = None,
        before: int | None = None, below: int | None = None,
    ) -> list[EventMessage]:
        if self._store is None or limit <= 0:
            return []
        bound = before if before is not None else below
        found = await self._store.query(
            HistoryQuery(room.id, limit=limit, before=bound, after=after, event=event)
        )
        return [m for m in found if self.depth(room, m.event) != 0 or not room.config.events]

    def _capped(self, room: Room, window: Sequence[EventMessage]) -> list[EventMessage]:
        counts: dict[str, int] = {}
        kept: list[EventMessage] = []
        for message in reversed(window):
            seen = counts.get(message.event, 0) + 1
            counts[message.event] = seen
            if seen <= self.depth(room, message.event):
                kept.append(message)
        kept.reverse()
        return kept

    async def recover(self, room: Room, since: Position) -> list[EventMessage] | None:
        """Every event after ``since``, or None if any is gone (never a partial replay)."""
        current = await self._broker.position(room.id)
        if since.epoch != current.epoch or since.seq > current.seq or since.seq < 0:
            return None
        if current.seq - since.seq > self.max_recovery:
            return None
        events = await self._broker.read(room.id, since.seq)
        if events is not None:
            return events
        if self._store is None:
            return None
        hot = await self._broker.read(room.id, since.seq, partial=True) or []
        upto = hot[0].seq if hot else current.seq + 1
        older = await self._store.read_after(room.id, since.seq, upto - since.seq - 1)
        older = [m for m in older if m.seq < upto]
        combined = older + hot
        expected = list(range(since.seq + 1, since.seq + 1 + len(combined)))
        if [m.seq for m in combined] != expected or (combined and combined[-1].seq < current.seq):
            return None
        return combined
