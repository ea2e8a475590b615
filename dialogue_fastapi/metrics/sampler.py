"""Copies a :class:`~.readings.Snapshot` into the metric objects.

In one process it runs when Prometheus scrapes (a collector registered ahead
of the metrics); in multiprocess mode each worker also runs it every
``sample_interval`` seconds, as the worker that serves the scrape cannot read
the others' memory, only their files. Cumulative figures (deliveries, store
writes, subscriber reconnects) become counter increments of their growth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

from ..core.metrics import SubscriberStats
from .families import BrokerFamilies, Families, PushFamilies, StoreFamilies
from .readings import Snapshot, StoreReading


class _Growth:
    """Turns a running total into counter increments (a total that went down starts again)."""

    def __init__(self) -> None:
        self._last: dict[Any, int] = {}

    def feed(self, counter: Any, key: Any, total: int) -> None:
        last = self._last.get(key, 0)
        if total > last:
            counter.inc(total - last)
        self._last[key] = total


class Sampler:
    """Writes snapshots into the gauges and counters of one exporter."""

    def __init__(self, families: Families, take: Callable[[], Snapshot],
                 broker: BrokerFamilies | None, store: StoreFamilies | None,
                 push: PushFamilies | None = None) -> None:
        self._f, self._take = families, take
        self._broker, self._store, self._push = broker, store, push
        self._growth = _Growth()
        self._room_labels: set[str] = set()

    def sample(self) -> None:
        snap = self._take()
        f = self._f
        f.active.set(snap.connections)
        for label, size in snap.rooms.items():
            f.rooms_size.labels(label).set(size)
        for label in self._room_labels - snap.rooms.keys():
            f.rooms_size.labels(label).set(0)  # multiprocess files cannot drop a series
        self._room_labels |= snap.rooms.keys()
        for transport, total in snap.delivered.items():
            self._growth.feed(f.delivered.labels(transport), ("delivered", transport), total)
        if self._store is not None and snap.store is not None:
            self._sample_store(self._store, snap.store)
        if self._broker is not None and snap.subscriber is not None:
            self._sample_broker(self._broker, snap.subscriber)
        if self._push is not None and snap.push is not None:
            self._sample_push(self._push, snap.push)

    def _sample_push(self, push: PushFamilies, stats: dict[str, int]) -> None:
        push.queue.set(stats.get("queue_depth", 0))
        push.in_flight.set(stats.get("in_flight", 0))
        for outcome in ("dropped", "cancelled", "collapsed", "muted", "held"):
            self._growth.feed(push.notifications.labels(outcome), ("push", outcome),
                              stats.get(outcome, 0))

    def _sample_store(self, store: StoreFamilies, reading: StoreReading) -> None:
        store.depth.set(reading.depth)
        store.lag.set(reading.lag)
        store.dead_letters.set(reading.dead_letters)
        self._growth.feed(store.written, "written", reading.written)

    def _sample_broker(self, broker: BrokerFamilies, stats: SubscriberStats) -> None:
        broker.up.set(1 if stats.up else 0)
        grow = self._growth.feed
        grow(broker.reconnects, "reconnects", stats.reconnects)
        grow(broker.repairs, "repairs", stats.gap_repairs)
        grow(broker.repaired, "repaired", stats.repaired_events)


class RefreshFirst:
    """A collector with no series of its own: registered ahead of the metrics, it samples
    the node when a scrape begins, so the figures read at scrape time are current."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        self._refresh = refresh

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        self._refresh()
        return []
