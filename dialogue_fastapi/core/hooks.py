"""Calling user callbacks that may be sync or async, without letting them crash us."""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("dialogue_fastapi")


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; await the result when it is awaitable."""
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def fire(name: str, fn: Callable[..., Any] | None, *args: Any) -> None:
    """Run a notification hook; its errors are logged, never raised."""
    if fn is None:
        return
    try:
        await call_maybe_async(fn, *args)
    except Exception:
        logger.exception("hook %s failed (ignored)", name)


def correlation_id() -> str:
    """An id that ties an INTERNAL error reply to its log line."""
    return "err_" + secrets.token_hex(6)
