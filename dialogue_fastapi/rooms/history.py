"""Reading a room's past: history pages and all-or-nothing recovery.

Without a store, history is the broker's hot history (per event name its
newest ``history=N``). With a store, a page is answered from the broker's
recovery window (every recent event, contiguous) when that covers it, and
from the store (which includes the events still waiting in the write-behind
queue) below the window. Events whose definition keeps no history
(``history`` 0/None) never appear in history pages, stored or not.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ..brokers.base import Broker
from ..core.config import DialogueConfig
from ..core.errors import Unavailable
from ..core.events import EventDefinition
from ..core.types import EventMessage, Position
from ..stores.base import EventStore, HistoryQuery, matches
from .registry import Room

logger = logging.getLogger("dialogue_fastapi")
Wanted = Callable[[str], bool]
_SCAN_PAGES = 20  # most store pages read to fill one filtered page


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

    def _names(
        self, room: Room, event: str | None, subscriptions: Wanted | None
    ) -> tuple[frozenset[str] | None, frozenset[str], Wanted | None]:
        """(only these names, never these, a filter SQL cannot express) for history pages."""
        if event is not None:
            names: frozenset[str] | None = frozenset({event})
        elif room.config.events:
            names = frozenset(room.config.event_names())
        elif self._config.default_event_history == 0:
            names = frozenset(self._global_events)
        else:
            names = None
        if names is None:
            never = frozenset(n for n in self._global_events if self.depth(room, n) == 0)
            return None, never, subscriptions
        kept = frozenset(n for n in names if self.depth(room, n) > 0
                         and (subscriptions is None or subscriptions(n)))
        return kept, frozenset(), None

    async def page(
        self, room: Room, *, event: str | None = None, limit: int = 50,
        before: int | None = None, after: int | None = None,
        subscriptions: Wanted | None = None, sender: str | None = None,
        since_ts: int | None = None, until_ts: int | None = None,
    ) -> list[EventMessage]:
        """Events in ascending seq: newest ``limit``, or a page after/before a seq.

        ``subscriptions`` filters by event name before the limit is applied;
        ``sender`` and ``since_ts``/``until_ts`` (ms) filter too.
        """
        names, never, extra = self._names(room, event, subscriptions)
        query = HistoryQuery(room.id, limit=limit, before=before, after=after, sender=sender,
                             since_ts=since_ts, until_ts=until_ts, events=names,
                             exclude_events=never)
        if self._store is None:
            return await self._hot_page(room, query, subscriptions)
        if (names is not None and not names) or limit <= 0:
            return []
        window = await self._broker.read(room.id, 0, partial=True) or []
        first = window[0].seq if window else None
        hot = [m for m in window if matches(m, query) and (extra is None or extra(m.event))]
        if after is not None:
            if first is not None and after + 1 >= first:
                return hot[:limit]
            older = await self._stored(_below(query, first), extra)
            return (older + hot)[:limit]
        if len(hot) >= limit or first == 1:  # the window holds the whole room
            return hot[-limit:]
        older = await self._stored(_below(query, first, limit - len(hot)), extra)
        return older + hot

    async def _hot_page(
        self, room: Room, query: HistoryQuery, subscriptions: Wanted | None
    ) -> list[EventMessage]:
        """No store: the broker's per-event hot history."""
        recent = await self._broker.recent(room.id)
        hot = [m for m in recent if matches(m, dataclasses.replace(query, before=None, after=None))
               and (subscriptions is None or subscriptions(m.event))]
        if query.before is not None:
            hot = [m for m in hot if m.seq < query.before]
        if query.after is not None:
            return [m for m in hot if m.seq > query.after][: query.limit]
        return hot[-query.limit:] if query.limit else []

    async def _stored(self, query: HistoryQuery, extra: Wanted | None) -> list[EventMessage]:
        try:
            return await self._scan(query, extra)
        except Exception as exc:
            logger.warning("reading history of %s from the store failed: %s", query.room, exc)
            raise Unavailable("the database is unavailable: older history cannot be read now") from None

    async def _scan(self, query: HistoryQuery, extra: Wanted | None) -> list[EventMessage]:
        """A page from the store; with a filter SQL cannot express, read on until it is full."""
        assert self._store is not None
        if extra is None:
            return await self._store.query(query)
        found: list[EventMessage] = []
        cursor = query
        for _ in range(_SCAN_PAGES):
            asked = max(cursor.limit * 2, 100)
            batch = await self._store.query(dataclasses.replace(cursor, limit=asked))
            kept = [m for m in batch if extra(m.event)]
            if query.after is not None:
                found += kept
                if len(found) >= query.limit or len(batch) < asked:
                    return found[: query.limit]
                cursor = dataclasses.replace(cursor, after=batch[-1].seq)
            else:
                found = kept + found
                if len(found) >= query.limit or len(batch) < asked:
                    return found[-query.limit:]
                cursor = dataclasses.replace(cursor, before=batch[0].seq)
        return found[: query.limit] if query.after is not None else found[-query.limit:]

    async def recover(self, room: Room, since: Position) -> list[EventMessage] | None:
        """Every event after ``since``, or None if any is gone (never a partial replay)."""
        current = await self._broker.position(room.id)
        # seq 0 is "nothing seen yet", the same in every epoch (a room with no event yet
        # gets a new epoch at each start when it was never stored): everything is missed
        same_epoch = since.epoch == current.epoch or since.seq == 0
        if not same_epoch or since.seq > current.seq or since.seq < 0:
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
        try:
            older = await self._store.read_after(room.id, since.seq, upto - since.seq - 1)
        except Exception as exc:  # the join goes on, with recovered: false
            logger.warning("recovering %s from the store failed: %s", room.id, exc)
            return None
        older = [m for m in older if m.seq < upto]
        combined = older + hot
        expected = list(range(since.seq + 1, since.seq + 1 + len(combined)))
        if [m.seq for m in combined] != expected or (combined and combined[-1].seq < current.seq):
            return None
        return combined


def _below(query: HistoryQuery, first: int | None, limit: int | None = None) -> HistoryQuery:
    """The query limited to seqs below the broker's window (``first``), for the store."""
    before = query.before
    if first is not None:
        before = first if before is None else min(before, first)
    return dataclasses.replace(query, before=before,
                               limit=query.limit if limit is None else limit)
