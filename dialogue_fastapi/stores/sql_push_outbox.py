"""The push outbox in SQL: ``<prefix>push_outbox`` (one row per event) and ``<prefix>push_sent``
(one row per event and device already done).

A claim is one ``UPDATE ... WHERE`` that sets ``claimed_by`` to a fresh token and
``claimed_until`` to the lease's end, on rows that are unclaimed or whose lease ran out;
the database re-checks that condition on the row it locks, so two nodes never claim
the same row. Where the database has it (PostgreSQL, MySQL) the ids are chosen with
``FOR UPDATE SKIP LOCKED``: concurrent claimers take disjoint rows without waiting for
each other. The claimer then reads back the rows carrying its token, and
:meth:`SqlPushOutbox.renew` extends the lease of the rows that token still holds while
they are being sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..push.outbox import OutboxEntry
from .sql_engine import reader
from .sql_errors import classify
from .sql_schema import Tables


class SqlPushOutbox:
    """:class:`~dialogue_fastapi.push.outbox.PushOutbox` on a started SQL store."""

    def __init__(self, engine: AsyncEngine, tables: Tables) -> None:
        self._engine, self._reader = engine, reader(engine)
        self._t = tables

    async def add(self, entries: Sequence[OutboxEntry]) -> None:
        if not entries:
            return
        t = self._t.push_outbox
        rows = [{"room": e.room, "seq": e.seq, "event": e.event, "sender": e.sender,
                 "notification": e.notification, "due_at": e.due_at, "attempts": 0}
                for e in entries]
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(t), rows)
        except IntegrityError:  # a (room, seq) already there: insert the others one by one
            for row in rows:
                try:
                    async with self._engine.begin() as conn:
                        await conn.execute(insert(t), [row])
                except IntegrityError:
                    continue
        except Exception as exc:
            raise classify(exc) from exc

    async def claim(self, owner: str, now: int, horizon: int, lease: int,
                    limit: int) -> list[OutboxEntry]:
        t = self._t.push_outbox
        token = f"{owner[:40]}:{secrets.token_hex(8)}"
        free = or_(t.c.claimed_until.is_(None), t.c.claimed_until < now)
        due_rooms = select(t.c.room).where(t.c.due_at <= now, free).distinct()
        wanted = (select(t.c.id).where(free, t.c.due_at <= now + horizon, t.c.room.in_(due_rooms))
                  .order_by(t.c.due_at, t.c.seq).limit(limit)
                  .with_for_update(skip_locked=True))  # PostgreSQL, MySQL; SQLite: not rendered
        async with self._engine.begin() as conn:
            ids = [row.id for row in await conn.execute(wanted)]
            if not ids:
                return []
            await conn.execute(update(t).where(and_(t.c.id.in_(ids), free)).values(
                claimed_by=token, claimed_until=now + lease, attempts=t.c.attempts + 1))
            rows = await conn.execute(select(t).where(t.c.claimed_by == token)
                                      .order_by(t.c.room, t.c.seq))
            return [self._entry(r) for r in rows]

    @staticmethod
    def _entry(r: Any) -> OutboxEntry:
        return OutboxEntry(r.room, r.seq, r.event, r.sender, dict(r.notification or {}), r.due_at,
                           r.id, r.attempts, r.claimed_until, r.claimed_by)

    async def renew(self, ids: Collection[int], token: str, until: int) -> None:
        t = self._t.push_outbox
        async with self._engine.begin() as conn:
            await conn.execute(update(t).where(t.c.id.in_(list(ids)), t.c.claimed_by == token)
                               .values(claimed_until=until))

    async def sent_to(self, ids: Collection[int]) -> dict[int, set[str]]:
        s = self._t.push_sent
        found: dict[int, set[str]] = {i: set() for i in ids}
        if not ids:
            return found
        async with self._reader.connect() as conn:
            for row in await conn.execute(select(s).where(s.c.outbox_id.in_(list(ids)))):
                found[row.outbox_id].add(row.registration_id)
        return found

    async def mark_sent(self, ids: Collection[int], registration_id: str, now: int) -> None:
        s = self._t.push_sent
        for outbox_id in ids:  # one by one: a row already recorded (a retried claim) is fine
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(s).values(outbox_id=outbox_id,
                                                        registration_id=registration_id,
                                                        sent_at=now))
            except IntegrityError:
                continue

    async def release(self, ids: Collection[int], due_at: int) -> None:
        t = self._t.push_outbox
        async with self._engine.begin() as conn:
            await conn.execute(update(t).where(t.c.id.in_(list(ids))).values(
                claimed_by=None, claimed_until=None, due_at=due_at))

    async def finish(self, ids: Collection[int]) -> None:
        t, s = self._t.push_outbox, self._t.push_sent
        async with self._engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.id.in_(list(ids))))
            await conn.execute(delete(s).where(s.c.outbox_id.in_(list(ids))))

    async def pending(self) -> int:
        t = self._t.push_outbox
        async with self._reader.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
