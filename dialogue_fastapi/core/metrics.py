"""The ``Metrics`` seam: what every layer reports, and its default that does nothing.

The hub, the publisher, the sessions and the store report through this small
protocol, never through prometheus-client (only ``dialogue_fastapi.metrics``
imports it, and only when ``metrics=`` is on). Calls are batched by design:
one call per published event, command, connection or store batch, never one
per delivered message; what is already counted elsewhere (the hub's deliveries,
the write-behind queue, the Redis subscriber) is read at scrape time instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class LabelledRoom(Protocol):
    """What a metrics sink needs of a room to give it a bounded label."""

    @property
    def id(self) -> str: ...
    @property
    def runtime(self) -> bool: ...
    @property
    def family(self) -> str | None: ...


class Metrics(Protocol):
    """Where the node reports what happens (``enabled`` False: callers may skip timing)."""

    enabled: bool

    def connection_opened(self, transport: str) -> None:
        """A connection was accepted (WebSocket after ``hello``, SSE after its first chunk)."""
        ...

    def connection_closed(self, transport: str, code: int | None, overflow: str | None,
                          dropped: int, delivered: int) -> None:
        """A connection ended: the server's close code (None: the peer left), the overflow
        reason of a slow consumer, the messages it dropped and the events it was sent."""
        ...

    def published(self, room: LabelledRoom, event: str, seconds: float, broker_seconds: float) -> None:
        """An event took a seq: the whole publish and the broker's part of it, in seconds."""
        ...

    def refused(self, code: str) -> None:
        """A publish was refused before it took a seq (rate limit, middleware, rules)."""
        ...

    def connection_refused(self, transport: str, code: str) -> None:
        """A request was refused before a session started (``/ws``, ``/sse``, the REST routes):
        ``RATE_LIMITED``/``UNAVAILABLE`` at the IP gate, ``UNAUTHORIZED``, ``FORBIDDEN`` (the
        Origin check), ``UNAVAILABLE`` (shutting down)."""
        ...

    def command(self, op: str, code: str, seconds: float) -> None:
        """A WebSocket command was answered with ``code`` (``"ok"`` or the error code)."""
        ...

    def recovered(self, transport: str, recovered: bool, replayed: int) -> None:
        """A join with a resume position: all-or-nothing outcome and events replayed."""
        ...

    def store_batch(self, seconds: float, events: int) -> None:
        """The write-behind wrote one batch to the store."""
        ...

    def push_sent(self, provider: str, outcome: str, attempts: int) -> None:
        """One device's send ended: ``delivered``, ``gone``, ``failed``, ``gave_up`` or
        ``rate_limited``, after ``attempts`` tries (0: not tried)."""
        ...


class NoMetrics:
    """The default: every report is a no-op (an app without ``metrics=`` pays nothing more)."""

    enabled = False

    def connection_opened(self, transport: str) -> None:
        pass

    def connection_closed(self, transport: str, code: int | None, overflow: str | None,
                          dropped: int, delivered: int) -> None:
        pass

    def published(self, room: LabelledRoom, event: str, seconds: float, broker_seconds: float) -> None:
        pass

    def refused(self, code: str) -> None:
        pass

    def connection_refused(self, transport: str, code: str) -> None:
        pass

    def command(self, op: str, code: str, seconds: float) -> None:
        pass

    def recovered(self, transport: str, recovered: bool, replayed: int) -> None:
        pass

    def store_batch(self, seconds: float, events: int) -> None:
        pass

    def push_sent(self, provider: str, outcome: str, attempts: int) -> None:
        pass


NO_METRICS = NoMetrics()


@dataclass(slots=True)
class SubscriberStats:
    """What a broker's subscriber counts for ``/ready`` and the metrics (Redis)."""

    up: bool = False
    reconnects: int = 0
    gap_repairs: int = 0  # repairs that fetched missed events from the stream or the store
    repaired_events: int = 0
