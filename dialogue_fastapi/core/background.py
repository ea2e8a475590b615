"""One long-running task of a node (retention, outbox relay, idle sweeper)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

#: seconds between two cancellations of a task that has not ended yet (see ``stop``)
RECANCEL = 0.5


class BackgroundTask:
    """Starts ``run()`` once as a named task; ``stop()`` cancels and awaits it."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        self._name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._main(), name=self._name)

    async def _main(self) -> None:
        await self._run()

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended.

        The cancellation is repeated every :data:`RECANCEL` seconds until the task ends:
        a library below may swallow one (redis-py's client has returned a command's
        answer to a task cancelled meanwhile), and a loop that goes on would keep this
        waiting for ever, and the stopped node beating.
        """
        task, self._task = self._task, None
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=RECANCEL)
        with contextlib.suppress(asyncio.CancelledError):
            await task
