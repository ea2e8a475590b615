"""The ``Tracing`` seam: spans around a publish and a node's fan-out, and its default.

The publisher and the hub trace through this small protocol, never through
OpenTelemetry (only ``dialogue_fastapi.tracing`` imports it, and only when
``tracing=`` is on). The default, :data:`NO_TRACING`, does nothing: with it a
publish costs one check of ``enabled``, and the hub one check per event of
the message's ``traceparent`` (set only by a traced publish); nothing is done
per recipient either way.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from .types import EventMessage

FanOut = Callable[[EventMessage], int]


class BrokerSpan(Protocol):
    """The ``dialogue.broker.publish`` span around one broker call."""

    def failed(self, error: BaseException) -> None:
        """The broker call raised ``error``."""
        ...

    def end(self) -> None:
        """The broker answered (or failed): end the span, with the seq when one was taken."""
        ...


class PublishSpan(Protocol):
    """The ``dialogue.publish`` span of one publish; a ``DialogueError`` leaving its block
    marks it refused with the error's protocol code."""

    def __enter__(self) -> PublishSpan: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def ids(self) -> tuple[str, str] | None:
        """``(trace_id, span_id)`` in hex for log lines; None when nothing is recorded."""
        ...

    def correlate(self, correlation_id: str) -> None:
        """The correlation id ``log_events`` gave this publish."""
        ...

    def outcome(self, message: EventMessage | None, duplicate: bool) -> None:
        """The publish is done: its message (seq), or None when a middleware dropped it."""
        ...

    def broker(self, message: EventMessage) -> BrokerSpan:
        """Start the broker's child span; stamps ``message.traceparent`` so that every node's
        fan-out of the event joins the trace."""
        ...


class Tracing(Protocol):
    """Where the publisher and the hub open spans (``enabled`` False: they skip tracing)."""

    enabled: bool

    def publish(self, room: str, event: str, user_id: str | None, transport: str,
                client_id: str | None) -> PublishSpan:
        """The span of one publish, to use as ``with tracing.publish(...) as span``."""
        ...

    def deliver(self, message: EventMessage, fan_out: FanOut) -> int:
        """Run ``fan_out(message)`` (this node's delivery of one event) in a
        ``dialogue.deliver`` span joined to the message's ``traceparent``; its result."""
        ...


class _NoPublishSpan:
    def __enter__(self) -> _NoPublishSpan:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def ids(self) -> tuple[str, str] | None:
        return None

    def correlate(self, correlation_id: str) -> None:
        pass

    def outcome(self, message: EventMessage | None, duplicate: bool) -> None:
        pass

    def broker(self, message: EventMessage) -> _NoBrokerSpan:
        return _NO_BROKER_SPAN


class _NoBrokerSpan:
    def failed(self, error: BaseException) -> None:
        pass

    def end(self) -> None:
        pass


_NO_PUBLISH_SPAN = _NoPublishSpan()
_NO_BROKER_SPAN = _NoBrokerSpan()


class NoTracing:
    """The default: no spans (an app without ``tracing=`` never imports OpenTelemetry)."""

    enabled = False

    def publish(self, room: str, event: str, user_id: str | None, transport: str,
                client_id: str | None) -> _NoPublishSpan:
        return _NO_PUBLISH_SPAN

    def deliver(self, message: EventMessage, fan_out: FanOut) -> int:
        return fan_out(message)


NO_TRACING = NoTracing()
