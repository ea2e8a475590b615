"""Several publishes of one connection in flight, handed to the broker in arrival order.

With a broker whose publish is a network round trip (Redis), a connection that
waited for each publish before reading its next frame could publish at most
one event per round trip. A lane lets up to ``limit`` publishes of one
connection run at once: each takes a turn when it arrives, runs validation and
middleware on its own, and hands its event to the broker only after every
earlier publish of the connection has handed over its own (or failed), so the
connection's events get their seqs in the order it sent them. Any other
command waits until the lane is empty, so it sees the publishes before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Turn:
    """One publish's place in its connection's order."""

    __slots__ = ("_after", "_mine")

    def __init__(self, after: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        self._after, self._mine = after, mine

    async def wait(self) -> None:
        """Until every earlier publish of the connection has handed over its event."""
        if self._after is not None and not self._after.done():
            await asyncio.shield(self._after)

    def handed_over(self) -> None:
        """This publish reached the broker (or ended): the next one may go."""
        if not self._mine.done():
            self._mine.set_result(None)


class PublishLane:
    """Up to ``limit`` publishes of one connection in flight, in order."""

    def __init__(self, limit: int = 32) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._tail: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, run: Callable[[Turn], Coroutine[Any, Any, None]]) -> None:
        """Run ``run(turn)`` (one publish, handed its turn) in the lane; waits while ``limit``
        are in flight."""
        await self._slots.acquire()
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        turn, self._tail = Turn(self._tail, mine), mine
        task = asyncio.create_task(self._run(run(turn), turn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, run: Coroutine[Any, Any, None], turn: Turn) -> None:
        try:
            await run
        finally:
            turn.handed_over()
            self._slots.release()

    async def drain(self) -> None:
        """Until every publish in the lane has finished."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self, grace: float) -> None:
        """Give in-flight publishes ``grace`` seconds, then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
