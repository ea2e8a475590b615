"""Reading a room's past: history pages and all-or-nothing recovery.

Hot history comes from the broker's window (newest ``history=N`` events per
event name); older events come from the event store when there is one.
"""

from __future__ import annotations

from collections.abc import Callable

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
        subscriptions: Callable[[str], bool] | None = None,
    ) -> list[EventMessage]:
        """Events in ascending seq: newest ``limit``, or a page after/before a seq.

        ``subscriptions`` filters by event name before the limit is applied.
        """

        def wanted(message: EventMessage) -> bool:
            return (event is None or message.event == event) and (
                subscriptions is None or subscriptions(message.event))

        hot = [m for m in await self._broker.recent(room.id) if wanted(m)]
        oldest_hot = hot[0].seq if hot else None
        if after is not None:
            result = [m for m in hot if m.seq > after][:limit]
            older = await self._from_store(room, wanted, limit, after=after, below=oldest_hot)
            return (older + result)[:limit]
        if before is not None:
            hot = [m for m in hot if m.seq < before]
        result = hot[-limit:] if limit else []
        missing = limit - len(result)
        if missing > 0:
            bounds = [x for x in (before, oldest_hot) if x is not None]
            below = min(bounds) if bounds else None
            result = await self._from_store(room, wanted, missing, below=below) + result
        return result

    async def _from_store(
        self, room: Room, wanted: Callable[[EventMessage], bool], limit: int, *,
        after: int | None = None, below: int | None = None,
    ) -> list[EventMessage]:
        """Older history from the store: events of names that keep history."""
        if self._store is None or limit <= 0:
            return []
        found = await self._store.query(
            HistoryQuery(room.id, limit=limit * 4 + 16, before=below, after=after)
        )
        kept = [m for m in found if wanted(m) and self.depth(room, m.event) > 0]
        return kept[:limit] if after is not None else kept[-limit:]

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
