"""One ordered publisher per node: publishes queued meanwhile go to Redis as one pipeline.

``submit`` appends a publish script call and returns a future at once, so the
caller's order is the order in which Redis runs the scripts (and so the order
of their seqs). One task drains the queue: everything queued while the
previous pipeline was in flight is sent as the next one, which is what keeps
a node's publishing rate from being one Redis round trip per event. Retries
of a whole pipeline are safe because every publish carries an idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ..core.background import BackgroundTask

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("dialogue_fastapi")
Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class ScriptPipeline:
    """Runs one Lua script for many callers, in submission order, batched."""

    def __init__(self, redis: Redis, source: str, max_batch: int = 256) -> None:
        self._redis, self._source, self._max = redis, source, max_batch
        self._sha: str | None = None
        self._queue: deque[Call] = deque()
        self._wake = asyncio.Event()
        self._task = BackgroundTask("dialogue-redis-publisher", self._run)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        while self._queue:
            _, _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(ConnectionError("the Redis broker stopped"))

    def submit(self, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one call; its future gets the script's answer (or the error)."""
        if not self._task.running:
            raise RuntimeError("the Redis broker is not started")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        self._wake.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self._max, len(self._queue)))]
                try:
                    answers = await self._execute(batch)
                except asyncio.CancelledError:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(ConnectionError("the Redis broker stopped"))
                    raise
                except Exception as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), answer in zip(batch, answers, strict=True):
                    if future.done():
                        continue
                    if isinstance(answer, Exception):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)

    async def _execute(self, batch: list[Call]) -> list[Any]:
        if self._sha is None:
            self._sha = await self._redis.script_load(self._source)
        answers = await self._send(batch)
        missing = [i for i, a in enumerate(answers) if isinstance(a, NoScriptError)]
        if missing:  # Redis restarted and forgot the script: load it, run those again
            self._sha = await self._redis.script_load(self._source)
            again = await self._send([batch[i] for i in missing])
            for i, answer in zip(missing, again, strict=True):
                answers[i] = answer
        return answers

    async def _send(self, batch: list[Call]) -> list[Any]:
        sha = self._sha
        assert sha is not None
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(sha, len(keys), *keys, *args)
            answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers
