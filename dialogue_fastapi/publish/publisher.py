"""Publishing an event: validation, the middleware chain, then the broker and the store.

With persistence, a place in the write-behind queue is reserved before the
broker assigns a seq (so a full queue refuses with ``UNAVAILABLE`` before
anything is delivered); a durable room's publish is acknowledged after the
store's commit.

With limits the Redis broker can check itself (``EventLimiter.fused_check``),
the check and the count move into the broker's publish script: one Redis
round trip instead of two. Such a publish runs the middleware before it
is counted; if it does not reach the broker (dropped, or refused by a
middleware or ``before_each``) it is counted then, on the limiter's own path,
and over a limit it is answered ``RATE_LIMITED`` as before, so clients see
the same answers and budgets as with the check in front of the middleware.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..brokers.base import (
    Broker,
    LimitCheck,
    LimitRefused,
    OrderedSubmit,
    Published,
)
from ..core.config import DialogueConfig, Hooks, RateLimit
from ..core.errors import (
    DialogueError,
    EventNotAllowed,
    NotInRoom,
    PayloadTooLarge,
    Unavailable,
)
from ..core.events import EventDefinition
from ..core.hooks import fire
from ..core.metrics import NO_METRICS, Metrics
from ..core.outages import protocol_error
from ..core.rules import check_event_name, check_payload, check_text
from ..core.tracing import NO_TRACING, PublishSpan, Tracing
from ..core.types import EventMessage
from ..limits.events import EventLimiter, Sender
from ..rooms.history import HistoryReader
from ..rooms.registry import Room
from ..stores.base import Rejection
from ..stores.write_behind import WriteBehind
from .handlers import HandlerRegistry
from .lane import Turn
from .pipeline import Middleware, PublishContext, apply_before_each, run_middleware
from .submission import PublishTools, Submission

logger = logging.getLogger("dialogue_fastapi")


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What the sender's ack carries."""

    message: EventMessage | None  # None: dropped by a middleware
    duplicate: bool = False

    def ack(self) -> dict[str, Any]:
        """The ack's result, the same over WebSocket and REST."""
        if self.message is None:
            return {"seq": None, "ts": None, "dropped": True}
        result: dict[str, Any] = {"seq": self.message.seq, "ts": self.message.ts}
        if self.duplicate:
            result["duplicate"] = True
        return result


class Publisher:
    """Runs the pipeline and hands accepted events to the broker."""

    def __init__(
        self, config: DialogueConfig, broker: Broker, writer: WriteBehind | None,
        handlers: HandlerRegistry, hooks: Hooks, history: HistoryReader,
    ) -> None:
        self._history = history
        self._config = config
        self._broker = broker
        self._submit: Callable[..., Awaitable[Published]] | None = (
            broker.submit if isinstance(broker, OrderedSubmit) else None)
        self._writer = writer
        self._handlers = handlers
        self._hooks = hooks
        self._global_events = {d.name: d for d in config.events}
        self.middleware: list[Middleware] = list(config.middleware)
        self.limiter = EventLimiter(config.rate_limit or RateLimit())
        self.limiter.fuse_with(broker)  # the broker checks the limits in its publish if it can
        self.tools = PublishTools(self.limiter, self.middleware)
        #: told of every publish into a room-family instance (its idle clock starts again)
        self.family_used: Callable[[Room], None] | None = None
        self.metrics: Metrics = NO_METRICS  # set by the runtime
        #: told of every event this node published (the push dispatcher's queue; never blocks)
        self.pushed: Callable[[Room, EventMessage], None] | None = None
        self.tracing: Tracing = NO_TRACING  # set by the facade (tracing=)

    def definition(self, room: Room, event: str) -> EventDefinition | None:
        """The event's definition in the room; raises EVENT_NOT_ALLOWED if not listed."""
        check_event_name(event)
        definition = room.config.event(event)
        if definition is None and room.config.events:
            raise EventNotAllowed(
                f"room '{room.id}' does not accept event '{event}' "
                f"(allowed: {', '.join(room.config.event_names())})"
            )
        return definition

    def durable(self, room: Room) -> bool:
        """Whether a publish in ``room`` is acknowledged only after the store committed it."""
        own = room.config.durable
        return self._config.durable if own is None else own

    async def publish(self, sub: Submission) -> PublishResult:
        """Run the whole pipeline; raises a DialogueError with the protocol code."""
        if self.tracing.enabled:  # the one check a publish pays without tracing
            return await self._traced(sub, commit=True)
        try:
            return await self._run(sub, commit=True)
        except DialogueError as exc:
            self._refused(sub, exc)
            raise

    async def prepare(self, sub: Submission) -> EventMessage | None:
        """The pipeline without the broker: the accepted message (None if a middleware dropped it)."""
        if self.tracing.enabled:
            return (await self._traced(sub, commit=False)).message
        try:
            outcome = await self._run(sub, commit=False)
        except DialogueError as exc:
            self._refused(sub, exc)
            raise
        return outcome.message

    async def _traced(self, sub: Submission, *, commit: bool) -> PublishResult:
        """``_run`` inside a ``dialogue.publish`` span (a refusal leaves it with its code)."""
        user = sub.identity.user_id if sub.identity is not None else None
        with self.tracing.publish(sub.room.id, sub.event, user, sub.transport,
                                  sub.client_id) as span:
            try:
                outcome = await self._run(sub, commit=commit, span=span)
            except DialogueError as exc:
                self._refused(sub, exc)
                raise
            span.outcome(outcome.message, outcome.duplicate)
            return outcome

    def _refused(self, sub: Submission, error: DialogueError) -> None:
        self.metrics.refused(error.code)
        self._record_rejection(sub, error)

    def _message(self, sub: Submission) -> EventMessage:
        """The input rules, membership, event allowed and schema: the accepted message."""
        config, room = self._config, sub.room
        check_payload(sub.data, sub.meta, max_size=config.max_message_size,
                      max_depth=config.max_json_depth)
        if sub.joined is False:
            raise NotInRoom(f"join room '{room.id}' before publishing to it")
        definition = self.definition(room, sub.event)
        check_text(sub.idempotency_key, "idempotency_key", 128)
        check_text(sub.sender, "the sender's user id")
        value = definition.validate(sub.data) if definition is not None else sub.data
        return EventMessage(
            room=room.id, event=sub.event, data=value, from_=sub.sender,
            ts=int(time.time() * 1000), meta=dict(sub.meta or {}),
            idempotency_key=sub.idempotency_key,
        )

    async def _run(
        self, sub: Submission, *, commit: bool, span: PublishSpan | None = None
    ) -> PublishResult:
        started = time.perf_counter() if self.metrics.enabled else None
        tools, room = sub.tools or self.tools, sub.room
        message = self._message(sub)
        limiter, check, sender = tools.limiter, None, None
        if sub.identity is not None and sub.transport != "server":  # the server is never limited
            sender = Sender(sub.identity.user_id, sub.client_id, sub.ip)
            if commit and isinstance(limiter, EventLimiter):
                check = limiter.fused_check(room, sub.event, sender)
            if check is None:
                await limiter.check(room, sub.event, sender)
        ctx = PublishContext(message, room, sub.identity, sub.transport, sub.client_id)
        if span is not None and (ids := span.ids()) is not None:  # for log_events' line
            ctx.state["trace_id"], ctx.state["span_id"] = ids
        chain = tools.middleware + list(room.config.middleware)
        duplicate = reached = False

        async def final(current: PublishContext) -> EventMessage | None:
            nonlocal duplicate, reached
            accepted = await apply_before_each(
                self._hooks.before_each, current.message, current.identity
            )
            if not commit:
                return accepted
            if accepted is not message:  # changed by a hook: encodable, before it takes a seq
                self._check_changed(accepted)
            reached = True
            try:
                published, duplicate = await self.commit(room, accepted, turn=sub.turn,
                                                         started=started, span=span, limits=check)
            except LimitRefused as refusal:
                assert check is not None and isinstance(limiter, EventLimiter)
                raise limiter.refused(check, refusal) from None
            return published

        try:
            result = await run_middleware(ctx, chain, final) if chain else await final(ctx)
        except DialogueError:
            if check is not None and sender is not None and not reached:
                await limiter.check(room, sub.event, sender)  # refused before the broker: counted
            raise
        finally:
            if span is not None and "correlation_id" in ctx.state:  # set by log_events
                span.correlate(str(ctx.state["correlation_id"]))
        if result is None or ctx.dropped:
            if check is not None and sender is not None and not reached:
                await limiter.check(room, sub.event, sender)  # dropped: counted all the same
            return PublishResult(None)
        return PublishResult(result, duplicate)

    async def commit(
        self, room: Room, message: EventMessage, *, durable: bool | None = None,
        turn: Turn | None = None, started: float | None = None, span: PublishSpan | None = None,
        limits: LimitCheck | None = None,
    ) -> tuple[EventMessage, bool]:
        """Publish an accepted message: broker (seq, fan-out), store, handlers, ``after_each``.
        ``started``: when its pipeline began (``perf_counter``), for the latency metric;
        ``span``: its publish span, when traced (the broker call gets a child span);
        ``limits``: checked by the broker in the publish (``LimitRefused`` over one)."""
        if room.family is not None and self.family_used is not None:
            self.family_used(room)
        durable = self.durable(room) if durable is None else durable
        writer = self._writer
        if writer is not None:
            writer.reserve(durable)  # UNAVAILABLE before publishing if it could not be stored
        window, depth = self._config.recovery_window, self._history.depth(room, message.event)
        submit, metrics = self._submit, self.metrics  # with limits: FusedLimits.submit
        handed = time.perf_counter() if metrics.enabled else 0.0
        broker_span = None if span is None else span.broker(message)
        try:
            if turn is not None and submit is not None:
                await turn.wait()  # the connection's earlier publishes are handed over first
                try:
                    pending = (submit(message, window, depth) if limits is None
                               else submit(message, window, depth, limits))
                finally:
                    turn.handed_over()
                published = await pending
            elif limits is not None and submit is not None:
                published = await submit(message, window, depth, limits)
            else:
                published = await self._broker.publish(message, window, depth)
        except LimitRefused:
            if writer is not None:
                writer.release()
            raise
        except Exception as exc:
            if writer is not None:
                writer.release()
            if broker_span is not None:
                broker_span.failed(exc)
            raise protocol_error(exc, f"broker publish in room {room.id}") from None
        finally:
            if broker_span is not None:
                broker_span.end()
        if published.duplicate:
            if writer is not None:
                writer.release()
                if durable:
                    await writer.wait_stored(published.message)
            return published.message, True
        stored = published.message
        if metrics.enabled:  # one report per event, whatever the number of its recipients
            now = time.perf_counter()
            metrics.published(room, stored.event, now - (handed if started is None else started),
                              now - handed)
        if self.pushed is not None:  # only the node that took the seq: once per cluster
            self.pushed(room, stored)
        not_stored: Unavailable | None = None
        if writer is not None:
            future = writer.put(stored, durable, published.epoch)
            if future is not None:
                try:
                    await writer.wait(future, f"event seq {stored.seq}")
                except Unavailable as exc:
                    not_stored = exc  # delivered already: handlers still run once
        await self._handlers.run(stored, room.family)
        if self._hooks.after_each is not None:
            recipients = published.recipients
            if recipients is None:  # delivered elsewhere (Redis): the room's cluster-wide size
                recipients = await self._broker.presence.count(room.id)
            await fire("after_each", self._hooks.after_each, stored, recipients)
        if not_stored is not None:
            raise not_stored
        return stored, False

    def _check_changed(self, message: EventMessage) -> None:
        """A message a middleware or ``before_each`` built follows the same rules."""
        config = self._config
        check_event_name(message.event)
        check_payload(message.data, message.meta, max_size=config.max_message_size,
                      max_depth=config.max_json_depth)

    def _record_rejection(self, sub: Submission, error: DialogueError) -> None:
        if not self._config.audit_rejections or self._writer is None:
            return
        if isinstance(error, Unavailable):
            return  # not a refusal of the event: the backend is down
        self._writer.record(Rejection(
            room=sub.room.id, event=str(sub.event)[:128], sender=sub.sender,
            ts=int(time.time() * 1000), code=error.code, reason=error.message,
            data=None if isinstance(error, PayloadTooLarge) else sub.data,
            meta=dict(sub.meta) if isinstance(sub.meta, dict) else {},
        ))
