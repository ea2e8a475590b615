"""Built-in event middleware: each is one line in ``middleware=[...]``.

- :func:`log_events`: a structured log line per publish, with a correlation id;
- :func:`content_filter`: a block list, rejecting or masking;
- :func:`require_role`: only senders whose identity's meta has a role;
- :func:`transform`: change (or drop) the message with a plain function.

Each returns an ``async def mw(ctx, call_next)`` usable globally
(``Dialogue(middleware=[...])``) or per room (``RoomConfig(middleware=[...])``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from .core.errors import DialogueError, Reject
from .core.hooks import call_maybe_async, correlation_id
from .core.types import EventMessage
from .publish.pipeline import CallNext, Middleware, PublishContext

_log = logging.getLogger("dialogue_fastapi.events")


def log_events(logger: logging.Logger | None = None, level: int = logging.INFO) -> Middleware:
    """Log every publish once it is decided: room, event, sender, transport, outcome
    (``published`` with its seq, ``dropped`` or the refusal's code), time taken, and a
    correlation id that later middleware find in ``ctx.state["correlation_id"]``. The
    sender's connection id and, with tracing, the publish span's ``trace_id`` and
    ``span_id`` are on the line too (the correlation id is also on the span)."""
    out = logger or _log

    async def log_events_mw(ctx: PublishContext, call_next: CallNext) -> EventMessage | None:
        cid = ctx.state.setdefault("correlation_id", correlation_id())
        started = time.perf_counter()
        fields: dict[str, Any] = {"correlation_id": cid, "room": ctx.room.id,
                                  "event": ctx.message.event,
                                  "sender": ctx.identity.user_id if ctx.identity else "server",
                                  "transport": ctx.transport}
        extra: dict[str, Any] = {"dialogue": fields}
        if ctx.identity is not None:
            extra["user_id"] = ctx.identity.user_id
        if ctx.client_id is not None:
            fields["client_id"] = ctx.client_id
        if "trace_id" in ctx.state:  # the publish span's (tracing=)
            fields["trace_id"], fields["span_id"] = ctx.state["trace_id"], ctx.state.get("span_id")
        try:
            result = await call_next(ctx)
        except DialogueError as exc:
            fields.update(outcome=exc.code, reason=exc.message)
            raise
        except Reject as exc:
            fields.update(outcome=exc.code, reason=exc.reason)
            raise
        else:
            if result is None or ctx.dropped:
                fields["outcome"] = "dropped"
            else:
                fields.update(outcome="published", seq=result.seq)
            return result
        finally:
            fields["ms"] = round((time.perf_counter() - started) * 1000, 3)
            out.log(level, "event %s", " ".join(f"{k}={v}" for k, v in fields.items()),
                    extra=extra)

    return log_events_mw


def content_filter(
    blocklist: Iterable[str], *, mode: Literal["reject", "replace"] = "reject",
    replacement: str = "***", fields: Iterable[str] | None = None,
) -> Middleware:
    """Block (``mode="reject"``: the sender gets ``BLOCKED``) or mask (``"replace"``)
    the listed words in the event's text, case-insensitively and as whole words.
    ``fields`` limits the check to those top-level keys of ``data``; by default every
    string in ``data`` (nested too) is checked."""
    words = sorted({w.strip() for w in blocklist if w.strip()}, key=len, reverse=True)
    if not words:
        raise ValueError("content_filter needs at least one word")
    if mode not in ("reject", "replace"):
        raise ValueError("mode must be 'reject' or 'replace'")
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)",
                         re.IGNORECASE)
    only = frozenset(fields) if fields is not None else None

    def clean(value: Any) -> tuple[Any, bool]:
        if isinstance(value, str):
            masked, count = pattern.subn(replacement, value)
            return masked, count > 0
        if isinstance(value, dict):
            found = False
            out: dict[str, Any] = {}
            for key, item in value.items():
                out[key], hit = clean(item)
                found = found or hit
            return out, found
        if isinstance(value, list):
            pairs = [clean(item) for item in value]
            return [p[0] for p in pairs], any(p[1] for p in pairs)
        return value, False

    async def content_filter_mw(ctx: PublishContext, call_next: CallNext) -> EventMessage | None:
        data = ctx.message.data
        if only is not None and isinstance(data, dict):
            checked = {k: v for k, v in data.items() if k in only}
            masked, hit = clean(checked)
            new_data: Any = {**data, **masked}
        else:
            new_data, hit = clean(data)
        if hit:
            if mode == "reject":
                raise Reject("the message contains a blocked word")
            ctx.message.data = new_data
        return await call_next(ctx)

    return content_filter_mw


def require_role(*roles: str, meta_key: str = "roles") -> Middleware:
    """Only senders whose ``identity.meta[meta_key]`` (a role or a list of roles) holds one
    of ``roles`` may publish; others get ``FORBIDDEN``. Server triggers always pass."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    wanted = frozenset(roles)

    async def require_role_mw(ctx: PublishContext, call_next: CallNext) -> EventMessage | None:
        if ctx.identity is not None:
            held = ctx.identity.meta.get(meta_key)
            have = {held} if isinstance(held, str) else set(held or ())
            if not have & wanted:
                raise Reject(f"publishing here needs the role {' or '.join(sorted(wanted))}",
                             code="FORBIDDEN")
        return await call_next(ctx)

    return require_role_mw


def transform(
    fn: Callable[[EventMessage], EventMessage | None] | Callable[[EventMessage], Any],
) -> Middleware:
    """Change the message with ``fn(message)`` (sync or async): it returns the message to
    publish (the same one changed, or a new one), or None to drop the event silently."""

    async def transform_mw(ctx: PublishContext, call_next: CallNext) -> EventMessage | None:
        changed = await call_maybe_async(fn, ctx.message)
        if changed is None:
            ctx.drop()
            return None
        if not isinstance(changed, EventMessage):
            raise TypeError(f"transform function returned {type(changed).__name__}, "
                            "not an EventMessage or None")
        ctx.message = changed
        return await call_next(ctx)

    transform_mw.__name__ = f"transform({getattr(fn, '__name__', 'fn')})"
    return transform_mw
