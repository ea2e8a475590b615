"""The ordered, bounded queue behind the write-behind store.

Items are events (written in batches) and operations (delete a room, save a
runtime room, set room state) that run in queue order between batches, so
that a late batch never resurrects a deleted room. The task draining it is
in :mod:`.write_loop`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from ..core.errors import Unavailable
from ..core.types import EventMessage
from .base import AuditStore, EventStore, Rejection

EpochOf = Callable[[str], Awaitable[str]]
Op = Callable[[], Awaitable[None]]


class _Item:
    __slots__ = ("future", "message", "op")

    def __init__(self, message: EventMessage | None, future: asyncio.Future[bool] | None,
                 op: Op | None = None) -> None:
        self.message = message
        self.future = future
        self.op = op


class WriteQueue:
    """Bounded queue of events and operations for ``store``, drained by one task."""

    def __init__(
        self, store: EventStore, epoch_of: EpochOf, *, batch_size: int = 500,
        interval: float = 0.05, max_pending: int = 100_000, durable_timeout: float = 5.0,
        retry_max: float = 5.0,
    ) -> None:
        self.store = store
        self._epoch_of = epoch_of
        self._batch_size, self._interval = batch_size, interval
        self._max_pending, self._durable_timeout = max_pending, durable_timeout
        self._retry_max = retry_max
        self._pending: deque[_Item] = deque()
        self._rejections: deque[Rejection] = deque(maxlen=10_000)
        self._reserved = 0
        self._epochs: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None
        self._started_once = self._closing = self.failing = False
        self.written = self.dropped = self.retries = 0
        self.dead_letters = 0  # kept by the store: counted at start, then as they come

    @property
    def pending(self) -> int:
        return len(self._pending)

    def lag(self, now_ms: int) -> float:
        """Seconds the oldest event waiting for the store has waited (0 when none waits)."""
        for item in self._pending:
            if item.message is not None:
                return max(now_ms - item.message.ts, 0) / 1000
        return 0.0

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self.failing

    def reserve(self, durable: bool) -> None:
        """Hold a place for one event, or raise UNAVAILABLE (nothing was published yet)."""
        if not self._started_once:
            raise Unavailable("the event store is not started: start the Dialogue first")
        if durable and not self.healthy:
            raise Unavailable("the database is unavailable: durable publishes wait until it is back")
        if len(self._pending) + self._reserved >= self._max_pending:
            raise Unavailable(f"{len(self._pending)} events are waiting for the database "
                              f"(max_pending {self._max_pending}); retry later")
        self._reserved += 1

    def release(self) -> None:
        """Give back a reservation whose publish did not happen."""
        self._reserved = max(self._reserved - 1, 0)

    def put(
        self, message: EventMessage, durable: bool, epoch: str | None = None,
    ) -> asyncio.Future[bool] | None:
        """Queue a reserved, numbered event; a durable one gets a future set on commit.
        ``epoch``: the room's epoch the broker gave the seq in (kept, so that writing it
        never depends on asking the broker later, which may have lost the room)."""
        self.release()
        if epoch is not None:
            self._epochs[message.room] = epoch
        future = asyncio.get_running_loop().create_future() if durable else None
        self._append(_Item(message, future), urgent=durable)
        return future

    def enqueue(self, op: Op) -> asyncio.Future[bool]:
        """Queue an operation to run in order with the events; its future is set when done."""
        future = asyncio.get_running_loop().create_future()
        self._append(_Item(None, future, op), urgent=True)
        return future

    async def flush(self) -> None:
        """Wait until everything queued so far is written (UNAVAILABLE after the durable timeout)."""
        async def nothing() -> None:
            return None

        if self._task is not None and self._pending:
            await self.wait(self.enqueue(nothing), "the queue")

    def _append(self, item: _Item, urgent: bool) -> None:
        self._pending.append(item)
        if self._wake is not None and self._urgent is not None:
            self._wake.set()
            if urgent or len(self._pending) >= self._batch_size:
                self._urgent.set()

    async def wait(self, future: asyncio.Future[bool], what: str) -> None:
        """Wait for a queued item's commit; UNAVAILABLE if it takes longer than allowed."""
        try:
            stored = await asyncio.wait_for(asyncio.shield(future), self._durable_timeout)
        except TimeoutError:
            raise Unavailable(f"{what} is not stored yet (the database is slow or unreachable); "
                              "it will be once the database is back") from None
        if not stored:
            raise Unavailable(f"{what} was refused by the database")

    async def wait_stored(self, message: EventMessage) -> None:
        """For a repeated durable publish: wait until the original is stored."""
        for item in self._pending:
            m = item.message
            if m is not None and m.room == message.room and m.seq == message.seq:
                if item.future is None:
                    item.future = asyncio.get_running_loop().create_future()
                    if self._urgent is not None:
                        self._urgent.set()
                await self.wait(item.future, f"event seq {message.seq}")
                return

    def record(self, rejection: Rejection) -> None:
        """Queue a refused publish for the audit trail (bounded: the oldest are dropped)."""
        if isinstance(self.store, AuditStore):
            self._rejections.append(rejection)
            if self._wake is not None:
                self._wake.set()

    def purge(self, room: str) -> None:
        """Forget the room's queued events (it is being deleted)."""
        kept: deque[_Item] = deque()
        for item in self._pending:
            if item.message is not None and item.message.room == room:
                if item.future is not None and not item.future.done():
                    item.future.set_result(True)
            else:
                kept.append(item)
        self._pending = kept
        self._epochs.pop(room, None)

    def pending_rooms(self) -> set[str]:
        """Rooms with events still waiting to be written."""
        return {item.message.room for item in self._pending if item.message is not None}

    def forget(self, room: str) -> None:
        """Drop the cached epoch of a room (its position was restored or reset)."""
        self._epochs.pop(room, None)
