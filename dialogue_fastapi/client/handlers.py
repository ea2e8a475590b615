"""Callback plumbing: handler sets, the ordered dispatcher and room mailboxes.

Handlers may be plain functions or coroutine functions. They run on one
dispatcher task per client, in the order the frames arrived, so a slow async
handler delays later handlers but never the socket reader (until the
dispatcher's bounded queue is full, which is the back-pressure that makes the
server close a slow consumer with 4009; the client then reconnects and recovers).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, TypeVar

logger = logging.getLogger("dialogue_fastapi.client")

Frame = dict[str, Any]
"""A decoded JSON object received from (or sent to) the server."""

Handler = Callable[[Frame], Awaitable[None] | None]
"""A callback receiving a frame; sync or async."""

ConnectionState = Literal["connecting", "connected", "reconnecting", "closed"]
"""The states of a `DialogueClient`."""

T = TypeVar("T")


async def invoke(handler: Callable[[T], Awaitable[None] | None], arg: T) -> None:
    """Call a sync or async handler; log (never raise) what it raises."""
    try:
        result = handler(arg)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("dialogue client handler %r failed", handler)


class HandlerSet(Generic[T]):
    """An ordered set of callbacks; `add` returns the matching unsubscribe."""

    def __init__(self) -> None:
        self._items: list[Callable[[T], Awaitable[None] | None]] = []

    def add(self, handler: Callable[[T], Awaitable[None] | None]) -> Callable[[], None]:
        """Register ``handler`` (once) and return a callable that removes it."""
        if handler not in self._items:
            self._items.append(handler)
        return lambda: self.remove(handler)

    def remove(self, handler: Callable[[T], Awaitable[None] | None]) -> None:
        """Remove ``handler`` if present."""
        if handler in self._items:
            self._items.remove(handler)

    def snapshot(self) -> list[Callable[[T], Awaitable[None] | None]]:
        """The handlers registered now, in registration order."""
        return list(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


Job = tuple[Callable[[Any], Awaitable[None]], Any]


class Dispatcher:
    """Runs handler jobs one after another on a single task (bounded queue)."""

    def __init__(self, maxsize: int = 1024) -> None:
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize)
        self._task: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the worker task if it is not running."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dialogue-client-dispatch")

    async def put(self, job: Callable[[T], Awaitable[None]], arg: T) -> None:
        """Queue ``job(arg)``; waits while the queue is full (back-pressure)."""
        await self._queue.put((job, arg))

    async def stop(self, drain: float = 0.0) -> None:
        """Let queued jobs run for up to ``drain`` seconds, then cancel the worker."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._is_current(task):
            self._retired.add(task)  # called from a handler: let it finish, then end
            task.add_done_callback(self._retired.discard)
            return
        if drain > 0 and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()

    @staticmethod
    def _is_current(task: asyncio.Task[None]) -> bool:
        return asyncio.current_task() is task

    async def _run(self) -> None:
        me = asyncio.current_task()
        while me not in self._retired:
            job, arg = await self._queue.get()
            try:
                await job(arg)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("dialogue client dispatch job failed")
            finally:
                self._queue.task_done()


class Mailbox(Generic[T]):
    """A bounded buffer feeding an async iterator; drops the oldest on overflow."""

    def __init__(self, maxsize: int, name: str) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._name = name
        self._wakeup = asyncio.Event()
        self.closed = False
        self.dropped = 0
        self._consumed = False

    def push(self, item: T) -> None:
        """Append ``item``; when full, discard the oldest and count it."""
        if self.closed:
            return
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                # Loud only when someone iterates: handler-only users never drain it.
                level = logging.WARNING if self._consumed else logging.DEBUG
                logger.log(
                    level,
                    "%s: iterator queue full (%d), dropped %d oldest message(s) so far",
                    self._name,
                    self._maxsize,
                    self.dropped,
                )
        self._items.append(item)
        self._wakeup.set()

    def close(self) -> None:
        """End iteration once the buffered items are consumed."""
        self.closed = True
        self._wakeup.set()

    async def get(self) -> T:
        """Next item; raises `StopAsyncIteration` once closed and drained."""
        self._consumed = True
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()
