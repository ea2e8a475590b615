"""The exporter: the metrics of one ``Dialogue``, its registry and how a scrape is served.

Built by the facade before the runtime (the runtime's parts report through
:attr:`Exporter.sink`), then told of the runtime (:meth:`Exporter.watch`) for
the figures read at scrape time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ..core.config import MetricsConfig
from ..runtime import Runtime
from . import multiprocess
from .families import BrokerFamilies, Families, PushFamilies, StoreFamilies
from .labels import RoomLabels
from .readings import read
from .sampler import RefreshFirst, Sampler
from .sink import PrometheusMetrics


class Exporter:
    """Prometheus metrics of one node (one worker), and its registry."""

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self.path: Path | None = multiprocess.directory()
        if self.path is not None:
            multiprocess.claim(self.path)
        self.registry: CollectorRegistry = config.registry or CollectorRegistry()
        # the sample runs ahead of the series it refreshes: registered first
        self.registry.register(RefreshFirst(self.refresh))
        self._own = None if self.path is not None else self.registry  # multiprocess: files only
        self.families = Families(self._own, config.latency_buckets)
        if self.path is not None:
            MultiProcessCollector(self.registry, str(self.path))  # type: ignore[no-untyped-call]
        self.room_labels = RoomLabels(config.max_label_values, config.runtime_label, config.room_label)
        self.sink = PrometheusMetrics(self.families, self.room_labels, config.max_label_values,
                                      config.max_event_series)
        self._sampler: Sampler | None = None

    @property
    def multiprocess(self) -> bool:
        return self.path is not None

    def watch(self, rt: Runtime) -> None:
        """Read ``rt``'s figures at scrape time (and create the broker's and store's metrics)."""
        broker = BrokerFamilies(self._own) if hasattr(rt.broker, "subscriber_stats") else None
        store = StoreFamilies(self._own) if rt.writer is not None else None
        push = PushFamilies(self._own) if rt.push_dispatch is not None else None
        self.sink.store_families = store
        self.sink.push_families = push
        sink = self.sink
        self._sampler = Sampler(
            self.families, lambda: read(rt, self.room_labels, sink.retired_delivered), broker, store,
            push)

    def refresh(self) -> None:
        """Bring the figures read at scrape time up to date (called as a scrape begins)."""
        if self.path is not None:
            multiprocess.bury_dead(self.path)
        if self._sampler is not None:
            self._sampler.sample()

    def render(self) -> bytes:
        """The text exposition of the registry (in multiprocess mode: every worker's sum)."""
        return generate_latest(self.registry)

    async def sample_forever(self) -> None:
        """Multiprocess mode: this worker's gauges reach its files every ``sample_interval``."""
        while True:
            if self._sampler is not None:
                self._sampler.sample()
            await asyncio.sleep(self.config.sample_interval)

    def instrument(self, app: Any, **options: Any) -> Any:
        """HTTP route metrics (prometheus-fastapi-instrumentator) on this exporter's registry,
        named ``dialogue_http_*``; call before the app starts. Returns the Instrumentator."""
        from prometheus_fastapi_instrumentator import Instrumentator

        # multiprocess: its series go to the files (a registry of their own would count twice)
        registry = CollectorRegistry() if self.path is not None else self.registry
        instrumentator = Instrumentator(registry=registry, **options)
        return instrumentator.instrument(app, metric_namespace="dialogue")
