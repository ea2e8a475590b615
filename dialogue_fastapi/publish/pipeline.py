"""The publish pipeline: one chain for WebSocket, REST and server ``trigger``.

Order: size -> membership -> event allowed -> schema validation -> rate limit
(clients only, not server triggers) -> global middleware -> room middleware ->
``before_each`` -> broker publish (seq) -> store -> ``on`` handlers ->
``after_each``. (A rate limit the Redis broker checks in its publish runs
there, after the middleware, with the same answers: ``publisher.py``.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import Blocked, DialogueError, InternalError, Reject, error_for_code
from ..core.hooks import call_maybe_async, correlation_id
from ..core.types import EventMessage, Identity
from ..rooms.registry import Room

logger = logging.getLogger("dialogue_fastapi")


@dataclass
class PublishContext:
    """What a middleware sees: the message (changeable), the room and the sender."""

    message: EventMessage
    room: Room
    identity: Identity | None
    transport: str
    client_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    dropped: bool = False

    def drop(self) -> None:
        """Drop the event silently: the sender gets an ack without a seq."""
        self.dropped = True


CallNext = Callable[[PublishContext], Awaitable[EventMessage | None]]
Middleware = Callable[[PublishContext, CallNext], Awaitable[EventMessage | None]]


async def guarded(what: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run user code: ``Reject`` becomes its protocol error, a crash becomes
    ``INTERNAL`` with a correlation id that is also in the log line."""
    try:
        return await call()
    except Reject as exc:
        raise error_for_code(exc.code, exc.reason, reason=exc.reason) from None
    except DialogueError:
        raise
    except Exception:
        cid = correlation_id()
        logger.exception("%s failed [%s]", what, cid, extra={"correlation_id": cid})
        raise InternalError(f"{what} failed; correlation id {cid}", correlation_id=cid) from None


async def run_middleware(
    ctx: PublishContext, chain: list[Middleware], final: CallNext
) -> EventMessage | None:
    """Run ``chain`` around ``final``; a middleware must call on, reject, or drop."""

    async def step(index: int, current: PublishContext) -> EventMessage | None:
        if index == len(chain):
            return await final(current)
        middleware = chain[index]
        called = False

        async def call_next(next_ctx: PublishContext) -> EventMessage | None:
            nonlocal called
            called = True
            return await step(index + 1, next_ctx)

        name = getattr(middleware, "__name__", repr(middleware))
        result: EventMessage | None = await guarded(
            f"middleware {name}", lambda: middleware(current, call_next)
        )
        if not called and not current.dropped:
            raise Blocked(
                f"middleware {name} neither called call_next nor dropped the event",
                reason="not passed on by middleware",
            )
        return result

    return await step(0, ctx)


async def apply_before_each(
    hook: Callable[..., Any] | None, message: EventMessage, identity: Identity | None
) -> EventMessage:
    """``before_each`` returns the (changed) message, None to keep it, or raises Reject."""
    if hook is None:
        return message
    result = await guarded("before_each", lambda: call_maybe_async(hook, message, identity))
    if result is False:
        raise Blocked("blocked by before_each", reason="blocked by before_each")
    return message if result is None or result is True else result
