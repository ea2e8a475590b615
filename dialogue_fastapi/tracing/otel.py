"""The ``Tracing`` seam over the OpenTelemetry API: the only module that imports it.

Spans of one event: ``dialogue.publish`` (the pipeline: rules, limits,
middleware, ``before_each``, the broker, the store, handlers), its child
``dialogue.broker.publish`` (the broker call that takes the seq), and one
``dialogue.deliver`` per node that fans the event out, whose parent is the
broker span: its W3C ``traceparent`` travels in the broker message (the
memory broker hands the same object over; Redis carries it in the JSON of
the message, a field that nodes of older versions ignore). Spans go to the
tracer provider given in ``TracingConfig`` or, by default, to the global
one, so an app that never configures OpenTelemetry records nothing.

A REST publish or a ``trigger`` is a child of the span current at the call
(the HTTP request's). A WebSocket publish starts a trace of its own, linked to
the span that was current when the connection was accepted (FastAPI's or an
ASGI instrumentation's ``WS`` span): a connection lives for hours, and one
trace per connection would hold every event it ever published.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    SpanKind,
    Status,
    StatusCode,
    format_span_id,
    format_trace_id,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..core.errors import DialogueError
from ..core.tracing import FanOut
from ..core.types import EventMessage

#: the broker message carries W3C trace context whatever propagator the app configured
_W3C = TraceContextTextMapPropagator()
#: transports whose publishes start their own trace, linked to the connection's span
_LONG_LIVED = frozenset({"websocket"})


def _version() -> str | None:
    try:
        return version("dialogue-fastapi")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return None


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the active span, or None (for JSON logs)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format_trace_id(context.trace_id), format_span_id(context.span_id)


class _BrokerSpan:
    __slots__ = ("_message", "_span")

    def __init__(self, span: trace.Span, message: EventMessage) -> None:
        self._span, self._message = span, message

    def failed(self, error: BaseException) -> None:
        code = error.code if isinstance(error, DialogueError) else type(error).__name__
        self._span.record_exception(error)
        self._span.set_status(Status(StatusCode.ERROR, code))

    def end(self) -> None:
        if self._message.seq:
            self._span.set_attribute("dialogue.seq", self._message.seq)
        self._span.end()


class _PublishSpan:
    """``dialogue.publish``, current while its block runs (the broker span is its child)."""

    __slots__ = ("_scope", "_span", "_tracer")

    def __init__(self, tracer: trace.Tracer, attributes: dict[str, Any], own_trace: bool) -> None:
        self._tracer = tracer
        parent, links = None, None
        if own_trace:
            parent = Context()
            connection = trace.get_current_span().get_span_context()
            links = [Link(connection)] if connection.is_valid else None
        self._span = tracer.start_span("dialogue.publish", context=parent, kind=SpanKind.INTERNAL,
                                       attributes=attributes, links=links)
        self._scope = trace.use_span(self._span, end_on_exit=True, record_exception=False,
                                     set_status_on_exception=False)

    def __enter__(self) -> _PublishSpan:
        self._scope.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        span = self._span
        if isinstance(error, DialogueError):  # refused: its protocol code, no stack trace
            span.set_attribute("dialogue.error.code", error.code)
            cid = error.extra.get("correlation_id")
            if cid is not None:  # INTERNAL: the id of the server log line with the crash
                span.set_attribute("dialogue.error.correlation_id", str(cid))
            span.set_status(Status(StatusCode.ERROR, f"{error.code}: {error.message}"[:300]))
        elif isinstance(error, Exception):
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self._scope.__exit__(kind, error, tb)

    def ids(self) -> tuple[str, str] | None:
        context = self._span.get_span_context()
        if not context.is_valid:
            return None
        return format_trace_id(context.trace_id), format_span_id(context.span_id)

    def correlate(self, correlation_id: str) -> None:
        self._span.set_attribute("dialogue.correlation_id", correlation_id)

    def outcome(self, message: EventMessage | None, duplicate: bool) -> None:
        if message is None:
            self._span.set_attribute("dialogue.dropped", True)
            return
        if message.seq:
            self._span.set_attribute("dialogue.seq", message.seq)
        if duplicate:
            self._span.set_attribute("dialogue.duplicate", True)

    def broker(self, message: EventMessage) -> _BrokerSpan:
        span = self._tracer.start_span(
            "dialogue.broker.publish", context=trace.set_span_in_context(self._span),
            kind=SpanKind.PRODUCER,
            attributes={"dialogue.room": message.room, "dialogue.event": message.event})
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=trace.set_span_in_context(span))
        message.traceparent = carrier.get("traceparent")  # none when nothing is recorded
        return _BrokerSpan(span, message)


class OtelTracing:
    """Spans on an OpenTelemetry tracer: the given provider's, or the global one's."""

    enabled = True

    def __init__(self, tracer_provider: Any = None) -> None:
        self._tracer = trace.get_tracer("dialogue_fastapi", _version(),
                                        tracer_provider=tracer_provider)

    def publish(self, room: str, event: str, user_id: str | None, transport: str,
                client_id: str | None) -> _PublishSpan:
        attributes: dict[str, Any] = {"dialogue.room": room, "dialogue.event": event,
                                      "dialogue.transport": transport}
        if user_id is not None:
            attributes["dialogue.user_id"] = user_id
        if client_id is not None:
            attributes["dialogue.client_id"] = client_id
        return _PublishSpan(self._tracer, attributes, transport in _LONG_LIVED)

    def deliver(self, message: EventMessage, fan_out: FanOut) -> int:
        parent = _W3C.extract({"traceparent": message.traceparent or ""})
        span = self._tracer.start_span(
            "dialogue.deliver", context=parent, kind=SpanKind.CONSUMER,
            attributes={"dialogue.room": message.room, "dialogue.event": message.event,
                        "dialogue.seq": message.seq})
        try:
            sent = fan_out(message)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()
            raise
        span.set_attribute("dialogue.recipients", sent)
        span.end()
        return sent
