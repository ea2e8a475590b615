"""Goodbye before uvicorn's own close: ``disconnect`` 1001 on SIGTERM / Ctrl+C.

On an exit signal uvicorn's handler sets ``should_exit``; within 0.1 s its main
loop closes every WebSocket with 1012 itself and only then runs the lifespan
shutdown, where Dialogue would say goodbye. So when a Dialogue starts under
uvicorn in the main thread, it wraps the exit-signal handlers uvicorn has
installed: the first exit signal first closes the connections of every running
Dialogue on the signalled event loop with ``disconnect`` + 1001 and waits for
their sessions to end (at most :data:`DRAIN_WAIT` seconds), then hands the
signal to uvicorn. A second signal goes straight through (Ctrl+C twice still
forces the exit).

The handlers are wrapped, not ``uvicorn.Server.handle_exit``: uvicorn binds
them before it imports the application (``uvicorn main:app``), so a patched
class method would come too late. gunicorn's uvicorn-worker runs the same
uvicorn server, so a SIGTERM to its master is covered too (tested; its SIGQUIT,
an immediate stop, is not). Under other servers (hypercorn, ...) nothing is wrapped; the lifespan
shutdown sends 1001 to what is still open.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("dialogue_fastapi")

#: longest wait for connections to close before uvicorn gets the signal
DRAIN_WAIT = 2.0

Drain = Callable[[], Awaitable[None]]
Handler = Callable[[int, FrameType | None], Any]

# running Dialogues (weak: one that is gone is forgotten) -> (their loop, their drain)
_drains: weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, Drain]] = (
    weakref.WeakKeyDictionary()
)
_draining: set[asyncio.AbstractEventLoop] = set()
_tasks: set[asyncio.Task[None]] = set()


def say_goodbye_first(owner: Any, drain: Drain) -> None:
    """``owner`` (a Dialogue starting) closes its connections with ``drain`` on an exit signal."""
    _drains[owner] = (asyncio.get_running_loop(), drain)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if callable(handler) and _is_uvicorns(handler):
                signal.signal(sig, Goodbye(handler))


def forget_goodbye(owner: Any) -> None:
    _drains.pop(owner, None)


def _is_uvicorns(handler: Any) -> bool:
    server = getattr(handler, "__self__", None)
    return (not isinstance(handler, Goodbye) and getattr(handler, "__name__", "") == "handle_exit"
            and hasattr(server, "should_exit"))


class Goodbye:
    """An exit-signal handler: Dialogue's clients first, then uvicorn's handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        # sse-starlette finds the uvicorn server through the SIGTERM handler's __self__
        self.__self__ = getattr(handler, "__self__", None)

    def __call__(self, sig: int, frame: FrameType | None) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        drains = [drain for lp, drain in list(_drains.values()) if lp is loop]
        if loop is None or not drains or getattr(self.__self__, "should_exit", False):
            self.handler(sig, frame)  # nothing to close here, or uvicorn is stopping already
            return
        if loop in _draining:  # a second signal: straight to uvicorn, as if the first had gone
            self.handler(sig, frame)  # the deferred first one
            self.handler(sig, frame)  # Ctrl+C twice: uvicorn forces the exit
            return
        _draining.add(loop)
        loop.call_soon_threadsafe(_start, loop, drains, lambda: self._hand_over(sig, frame))

    def _hand_over(self, sig: int, frame: FrameType | None) -> None:
        if not getattr(self.__self__, "should_exit", False):  # a second signal did already
            self.handler(sig, frame)


def _start(loop: asyncio.AbstractEventLoop, drains: list[Drain], then: Callable[[], None]) -> None:
    task = loop.create_task(_drain_all(loop, drains, then))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _drain_all(loop: asyncio.AbstractEventLoop, drains: list[Drain],
                     then: Callable[[], None]) -> None:
    try:
        async with asyncio.timeout(DRAIN_WAIT):
            await asyncio.gather(*(drain() for drain in drains), return_exceptions=True)
    except TimeoutError:
        logger.warning("connections still open %.0fs after the exit signal; shutting down",
                       DRAIN_WAIT)
    finally:
        _draining.discard(loop)
        then()
