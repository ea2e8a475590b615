"""The outbox of transactional publishes: rows written in the caller's transaction.

A row is *claimed* (a lease, so two nodes never deliver it at once), then
delivered, then marked with the seq it got. Delivery is exactly once per
(room, sender, idempotency key): before publishing, the events table is
checked for an event that already carries the key (a crash between the
event's commit and the mark).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ..core.types import EventMessage
from .sql_engine import reading
from .sql_schema import Tables


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A committed transactional publish waiting for (or done with) its fan-out."""

    id: int
    message: EventMessage
    delivered: bool


async def add(session: AsyncSession, t: Tables, message: EventMessage) -> int:
    """Insert the row in the caller's transaction; returns its id."""
    stmt = insert(t.outbox).values(
        room=message.room, event=message.event, data=message.data, sender=message.from_,
        meta=message.meta or None, ts=message.ts, idempotency_key=message.idempotency_key,
    ).returning(t.outbox.c.id)
    return int((await session.execute(stmt)).scalar_one())


async def claim(engine: AsyncEngine, t: Tables, row_id: int, now: int, lease_ms: int) -> OutboxRow | None:
    """Take the row for delivery unless it is delivered or another node holds a fresh lease."""
    o = t.outbox.c
    async with engine.begin() as conn:
        claimed = await conn.execute(
            update(t.outbox)
            .where(o.id == row_id, o.delivered_at.is_(None),
                   o.claimed_at.is_(None) | (o.claimed_at < now - lease_ms))
            .values(claimed_at=now)
        )
        if claimed.rowcount != 1:
            return None
        row = (await conn.execute(select(t.outbox).where(o.id == row_id))).one()
    return OutboxRow(int(row.id), _message(row), False)


def _message(row: Any) -> EventMessage:
    return EventMessage(room=row.room, event=row.event, data=row.data, from_=row.sender,
                        ts=int(row.ts), meta=dict(row.meta or {}),
                        idempotency_key=row.idempotency_key)


async def stored_seq(engine: AsyncEngine, t: Tables, message: EventMessage) -> int | None:
    """The seq of an already stored event with the message's sender and key, if any."""
    e = t.events.c
    stmt = select(e.seq).where(e.room == message.room, e.sender == message.from_,
                               e.idempotency_key == message.idempotency_key).limit(1)
    async with reading(engine) as conn:
        seq = (await conn.execute(stmt)).scalar()
    return None if seq is None else int(seq)


async def mark_delivered(engine: AsyncEngine, t: Tables, row_id: int, seq: int | None, now: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(t.outbox).where(t.outbox.c.id == row_id)
                           .values(delivered_at=now, seq=seq))


async def release(engine: AsyncEngine, t: Tables, row_id: int) -> None:
    """Give up a claim (delivery failed): the relay may take the row at once."""
    async with engine.begin() as conn:
        await conn.execute(update(t.outbox).where(t.outbox.c.id == row_id,
                                                  t.outbox.c.delivered_at.is_(None))
                           .values(claimed_at=None))


async def undelivered(engine: AsyncEngine, t: Tables, older_than: int, limit: int) -> list[int]:
    """Ids of committed rows without a delivery, oldest first."""
    o = t.outbox.c
    stmt = (select(o.id).where(o.delivered_at.is_(None), o.ts < older_than)
            .order_by(o.id).limit(limit))
    async with reading(engine) as conn:
        return [int(i) for i in (await conn.execute(stmt)).scalars()]


async def prune_delivered(engine: AsyncEngine, t: Tables, older_than: int, limit: int) -> int:
    """Forget delivered rows older than ``older_than`` (at most ``limit``)."""
    o = t.outbox.c
    ids = (select(o.id).where(o.delivered_at.is_not(None), o.delivered_at < older_than)
           .order_by(o.id).limit(limit))
    async with engine.begin() as conn:
        result = await conn.execute(delete(t.outbox).where(o.id.in_(ids.scalar_subquery())))
    return max(int(result.rowcount or 0), 0)


async def get(engine: AsyncEngine, t: Tables, row_id: int) -> OutboxRow | None:
    async with reading(engine) as conn:
        row = (await conn.execute(select(t.outbox).where(t.outbox.c.id == row_id))).first()
    if row is None:
        return None
    return OutboxRow(int(row.id), _message(row), row.delivered_at is not None)
