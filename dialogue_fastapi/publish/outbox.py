"""Transactional publish: ``dialogue.publish_in(session, ...)`` and the outbox relay.

The event is validated (and run through middleware) at once, then written
as an outbox row inside the caller's SQLAlchemy transaction. After that
transaction commits, the row is delivered (broker, store, handlers) by a task
started from the session's ``after_commit``; a rollback leaves nothing to
deliver. The relay delivers committed rows whose delivery never happened (a
crash right after the commit) every ``outbox_interval`` seconds. A row is
claimed with a lease first, and the events table is checked for its
idempotency key before publishing, so each row is delivered once.

SQLAlchemy is imported only through :mod:`.stores.sql_outbox`, lazily: the
relay exists only when the store is the SQL store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ..core.background import BackgroundTask
from ..core.types import EventMessage
from ..rooms.registry import RoomRegistry
from .publisher import Publisher

logger = logging.getLogger("dialogue_fastapi")
_INFO_KEY = "dialogue_outbox"


def _now() -> int:
    return int(time.time() * 1000)


class OutboxRelay:
    """Writes outbox rows in callers' transactions and delivers them after commit."""

    def __init__(
        self, publisher: Publisher, registry: RoomRegistry, store: Any, *,
        interval: float = 1.0, grace: float = 5.0, lease: float = 30.0,
    ) -> None:
        self._publisher = publisher
        self._registry = registry
        self._store = store  # a SqlStore (has .engine and .tables)
        self._interval = interval
        self.grace_ms = int(grace * 1000)  # rows younger than this are left to after_commit
        self._lease_ms = int(lease * 1000)
        self._background = BackgroundTask("dialogue-outbox-relay", self._run)
        self._deliveries: set[asyncio.Task[None]] = set()
        self.delivered = 0

    async def add(self, session: Any, message: EventMessage) -> int:
        """Insert the row in ``session``'s transaction; deliver it after that commits."""
        from sqlalchemy import event

        from ..stores import sql_outbox

        sync_session = getattr(session, "sync_session", None)
        if sync_session is None:
            raise TypeError("publish_in needs a SQLAlchemy AsyncSession")
        row_id = await sql_outbox.add(session, self._store.tables, message)
        ids: list[int] | None = sync_session.info.get(_INFO_KEY)
        if ids is None:
            ids = sync_session.info[_INFO_KEY] = []
            loop = asyncio.get_running_loop()

            def committed(_: Any) -> None:
                waiting = list(sync_session.info.get(_INFO_KEY) or [])
                sync_session.info[_INFO_KEY] = []
                if waiting:
                    loop.call_soon(self._spawn, waiting)

            def rolled_back(_: Any) -> None:
                sync_session.info[_INFO_KEY] = []

            event.listen(sync_session, "after_commit", committed)
            event.listen(sync_session, "after_rollback", rolled_back)
        ids.append(row_id)
        return row_id

    def _spawn(self, ids: list[int]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver_all(ids))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver_all(self, ids: list[int]) -> None:
        for row_id in ids:  # in the order the transaction wrote them
            try:
                await self.deliver(row_id)
            except Exception as exc:
                logger.warning("outbox row %d not delivered yet (the relay retries): %s", row_id, exc)

    async def deliver(self, row_id: int) -> int | None:
        """Deliver one committed row unless it is delivered or claimed; returns its seq."""
        from ..stores import sql_outbox

        engine, tables = self._store.engine, self._store.tables
        row = await sql_outbox.claim(engine, tables, row_id, _now(), self._lease_ms)
        if row is None:
            return None
        try:
            seq = await self._publish(row.message)
        except BaseException:
            with contextlib.suppress(Exception):  # let the relay retry without waiting for the lease
                await sql_outbox.release(engine, tables, row_id)
            raise
        await sql_outbox.mark_delivered(engine, tables, row_id, seq, _now())
        return seq

    async def _publish(self, message: EventMessage) -> int | None:
        from ..stores import sql_outbox

        seq = await sql_outbox.stored_seq(self._store.engine, self._store.tables, message)
        if seq is None:
            room = self._registry.find(message.room)
            if room is None:
                logger.warning("outbox event for room %r: the room is gone; not delivered",
                               message.room)
            else:
                message.ts = _now()
                published, _ = await self._publisher.commit(room, message, durable=True)
                seq = published.seq
                self.delivered += 1
        return seq

    async def run_pass(self) -> int:
        """Deliver committed rows older than the grace period; returns how many were handled."""
        from ..stores import sql_outbox

        engine, tables = self._store.engine, self._store.tables
        ids = await sql_outbox.undelivered(engine, tables, _now() - self.grace_ms, 100)
        for row_id in ids:
            await self.deliver(row_id)
        await sql_outbox.prune_delivered(engine, tables, _now() - 3_600_000, 1000)
        return len(ids)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except Exception as exc:
                logger.warning("an outbox relay pass failed (retried later): %s", exc)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()
        if self._deliveries:
            await asyncio.wait(list(self._deliveries), timeout=5.0)
