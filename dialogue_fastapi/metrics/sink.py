"""The ``Metrics`` the node reports through when metrics are on: prometheus-client behind it.

Hot-path cost is one counter increment and one histogram observation per
published event (whatever its number of recipients) and per command; the
labelled children are looked up once and kept, so a report is a dict look-up
and the client's own increment. Per-delivery figures are never reported here:
the exporter reads them at scrape time (:mod:`.readings`).
"""

from __future__ import annotations

from typing import Any

from ..core.metrics import LabelledRoom
from .families import Families, PushFamilies, StoreFamilies
from .labels import OTHER, BoundedValues, RoomLabels


class PrometheusMetrics:
    """:class:`~dialogue_fastapi.core.metrics.Metrics` on prometheus-client."""

    enabled = True

    def __init__(self, families: Families, rooms: RoomLabels, max_label_values: int,
                 max_event_series: int) -> None:
        self.families = families
        self._rooms = rooms
        self._events = BoundedValues(max_label_values)
        self._pairs = max_event_series  # (room, event) series: the product is capped as well
        self._published: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._by_room: dict[tuple[str, str], tuple[Any, Any]] = {}  # (room id, event) -> children
        self._commands: dict[tuple[str, str], Any] = {}
        self._command_seconds: dict[str, Any] = {}
        self._broker = families.broker_seconds
        #: events queued to connections that have ended, by transport (read with the live ones)
        self.retired_delivered: dict[str, int] = {}
        self.store_families: StoreFamilies | None = None  # with a store (set by the exporter)
        self.push_families: PushFamilies | None = None  # with push (set by the exporter)

    def connection_opened(self, transport: str) -> None:
        f = self.families
        f.connections.inc()
        f.accepted.labels(transport).inc()

    def connection_closed(self, transport: str, code: int | None, overflow: str | None,
                          dropped: int, delivered: int) -> None:
        f = self.families
        f.closed.labels(transport, "client" if code is None else str(code)).inc()
        if overflow is not None:
            f.slow.labels(transport, overflow).inc()
            f.dropped.labels(transport, overflow).inc(dropped)
        self.retired_delivered[transport] = self.retired_delivered.get(transport, 0) + delivered

    def published(self, room: LabelledRoom, event: str, seconds: float, broker_seconds: float) -> None:
        key = (room.id, event)
        children = self._by_room.get(key)
        if children is None:
            children = self._children(self._rooms(room), self._events(event))
            if len(self._by_room) >= 50_000:  # bounded memo: many runtime rooms just look up again
                self._by_room.clear()
            self._by_room[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)
        self._broker.observe(broker_seconds)

    def _children(self, room: str, event: str) -> tuple[Any, Any]:
        children = self._published.get((room, event))
        if children is None and len(self._published) >= self._pairs:
            room = event = OTHER
            children = self._published.get((room, event))
        if children is None:
            f = self.families
            children = self._published[(room, event)] = (
                f.events.labels(room, event), f.latency.labels(room, event))
        return children

    def refused(self, code: str) -> None:
        self.families.refusals.labels(code).inc()

    def connection_refused(self, transport: str, code: str) -> None:
        self.families.connection_refusals.labels(transport, code).inc()

    def command(self, op: str, code: str, seconds: float) -> None:
        counter = self._commands.get((op, code))
        if counter is None:
            counter = self._commands[(op, code)] = self.families.commands.labels(op, code)
        counter.inc()
        timer = self._command_seconds.get(op)
        if timer is None:
            timer = self._command_seconds[op] = self.families.command_seconds.labels(op)
        timer.observe(seconds)

    def recovered(self, transport: str, recovered: bool, replayed: int) -> None:
        f = self.families
        f.recoveries.labels(transport, "recovered" if recovered else "failed").inc()
        if replayed:
            f.recovered.labels(transport).inc(replayed)

    def store_batch(self, seconds: float, events: int) -> None:
        store = self.store_families
        if store is not None:
            store.batch.observe(seconds)

    def push_sent(self, provider: str, outcome: str, attempts: int) -> None:
        push = self.push_families
        if push is not None:
            push.sends.labels(provider, outcome).inc()
            if attempts > 1:
                push.retries.labels(provider).inc(attempts - 1)
