"""The write-behind queue's one writer task: batches, operations, retries with backoff.

The writer writes as soon as ``batch_size`` events or a durable item wait,
otherwise after at most ``interval`` seconds. A failed write stays at the
head of the queue and is retried with capped exponential backoff (jittered,
at most ``retry_max`` seconds apart); a batch the store refuses as data
(:class:`PermanentStoreError`) is split until the bad event is alone, and only
that one is set aside: into the store's dead letters (:class:`DeadLetterStore`)
with a warning, or dropped with an error if the store has none or refuses the
dead letter too. The writer then goes on. ``stop`` flushes what is pending first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from itertools import islice

from ..core.metrics import NO_METRICS, Metrics
from ..core.types import EventMessage
from .base import AuditStore, DeadLetterStore, PermanentStoreError
from .write_queue import WriteQueue, _Item

logger = logging.getLogger("dialogue_fastapi")


class WriteLoop(WriteQueue):
    """A :class:`WriteQueue` drained by one background task."""

    metrics: Metrics = NO_METRICS  # told of each batch written (set by the runtime)

    async def start(self) -> None:
        if self._task is not None:
            return
        if isinstance(self.store, DeadLetterStore):
            try:
                self.dead_letters = await self.store.count_dead_letters()
            except Exception as exc:
                logger.warning("could not count the dead letters: %s", exc)
        self._wake, self._urgent = asyncio.Event(), asyncio.Event()
        self._closing, self._started_once = False, True
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="dialogue-write-behind")

    async def stop(self, timeout: float = 10.0) -> None:
        """Flush what is pending (for at most ``timeout`` seconds), then stop the task."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        if self._wake is not None and self._urgent is not None:
            self._wake.set()
            self._urgent.set()
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending:
            logger.error("%d events could not be written to the database before shutdown",
                         len(self._pending))

    async def _run(self) -> None:
        assert self._wake is not None and self._urgent is not None
        attempt = 0
        while True:
            if not self._pending and not self._rejections:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._closing and len(self._pending) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._urgent.wait()
            self._urgent.clear()
            try:
                await self._write_some()
            except Exception as exc:
                attempt += 1
                self.retries += 1
                if not self.failing or attempt % 20 == 0:
                    logger.warning("writing %d events to the database failed (attempt %d): %s",
                                   len(self._pending), attempt, exc)
                self.failing = True
                if self._closing and attempt >= 3:
                    return
                delay = min(0.05 * 2 ** min(attempt, 16), self._retry_max)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                continue
            if self.failing:
                logger.warning("the database is back: writing resumed after %d attempts", attempt)
            attempt, self.failing = 0, False

    async def _write_some(self) -> None:
        if self._pending and self._pending[0].op is not None:
            await self._run_op(self._pending[0])
        elif self._pending:
            batch = list(islice(self._pending, self._batch_size))
            batch = batch[: next((i for i, b in enumerate(batch) if b.op is not None), len(batch))]
            started = time.perf_counter()
            dropped = await self._write(batch, await self._epochs_for(batch))
            self.metrics.store_batch(time.perf_counter() - started, len(batch))
            taken = {id(item) for item in batch}  # purge() may have removed some meanwhile
            while self._pending and id(self._pending[0]) in taken:
                self._pending.popleft()
            self.written += len(batch) - len(dropped)
            for item in batch:
                if item.future is not None and not item.future.done():
                    item.future.set_result(item not in dropped)
        await self._write_rejections()

    async def _run_op(self, item: _Item) -> None:
        assert item.op is not None
        ok = True
        try:
            await item.op()
        except PermanentStoreError as exc:
            logger.error("a store operation was refused and is dropped: %s", exc)
            ok = False
        if self._pending and self._pending[0] is item:
            self._pending.popleft()
        if item.future is not None and not item.future.done():
            item.future.set_result(ok)

    async def _write(self, batch: list[_Item], epochs: Mapping[str, str]) -> list[_Item]:
        """Append; a batch the store refuses is split until the bad event is alone (set aside)."""
        try:
            await self.store.append([i.message for i in batch if i.message is not None], epochs)
            return []
        except PermanentStoreError as exc:
            if len(batch) == 1:
                m = batch[0].message
                assert m is not None
                await self._set_aside(m, epochs.get(m.room), str(exc))
                return batch
            mid = len(batch) // 2
            return await self._write(batch[:mid], epochs) + await self._write(batch[mid:], epochs)

    async def _set_aside(self, m: EventMessage, epoch: str | None, error: str) -> None:
        """A refused event goes to the dead letters; if it cannot, it is dropped (logged)."""
        self.dropped += 1
        if isinstance(self.store, DeadLetterStore):
            try:
                await self.store.record_dead_letter(m, epoch, error)
            except PermanentStoreError as exc:  # other errors: the batch is retried
                error = f"{error}; the dead letter was refused too: {exc}"
            else:
                self.dead_letters += 1
                logger.warning("event %r/%r seq %d was refused by the database and kept as a "
                               "dead letter: %s", m.room, m.event, m.seq, error)
                return
        logger.error("event %r/%r seq %d cannot be stored and is dropped: %s; the event: %r",
                     m.room, m.event, m.seq, error, m.to_record())

    async def _epochs_for(self, batch: list[_Item]) -> dict[str, str]:
        rooms = {item.message.room for item in batch if item.message is not None}
        for room in rooms - self._epochs.keys():
            self._epochs[room] = await self._epoch_of(room)
        return {room: self._epochs[room] for room in rooms}

    async def _write_rejections(self) -> None:
        if not self._rejections or not isinstance(self.store, AuditStore):
            return
        batch = list(islice(self._rejections, self._batch_size))
        try:
            await self.store.record_rejections(batch)
        except PermanentStoreError as exc:  # other errors: retried like events
            logger.error("%d rejections cannot be recorded and are dropped: %s", len(batch), exc)
        for _ in batch:
            self._rejections.popleft()
