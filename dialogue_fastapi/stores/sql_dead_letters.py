"""Dead letters: events the database refused as data, kept in ``<prefix>dead_letters``.

A refused event must still fit somewhere, so every text is made storable
first: U+0000 (which PostgreSQL's text and jsonb refuse) and lone surrogates
are escaped, the event itself is kept as ASCII JSON text, and a seq or ts
outside the 64-bit range is stored as NULL (it is still in the JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.types import EventMessage
from .sql_engine import reading
from .sql_schema import Tables, utcnow

_INT64 = range(-(2**63), 2**63)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused event: where it belongs, why it was refused, and the event as JSON text."""

    id: int
    room: str
    seq: int | None
    epoch: str | None
    event: str
    sender: str
    ts: int | None
    error: str
    message: str
    created_at: datetime

    def event_json(self) -> dict[str, Any]:
        """The event record (``EventMessage.from_wire`` rebuilds it; escapes decode back to NUL)."""
        value: dict[str, Any] = json.loads(self.message)
        return value


def storable(text: str) -> str:
    """``text`` without NULs or lone surrogates (escaped as ``\\u0000``, ``\\ud800``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def as_json(message: EventMessage) -> str:
    """The event as ASCII JSON text: NULs and surrogates become escapes; odd values their repr."""
    return json.dumps(message.to_record(), ensure_ascii=True, default=repr)


def _int64(value: int) -> int | None:
    return value if isinstance(value, int) and value in _INT64 else None


def dead_letter_row(message: EventMessage, epoch: str | None, error: str) -> dict[str, Any]:
    return {
        "room": storable(message.room), "seq": _int64(message.seq),
        "epoch": None if epoch is None else storable(epoch)[:64],
        "event": storable(message.event), "sender": storable(message.from_),
        "ts": _int64(message.ts), "error": storable(error), "message": as_json(message),
        "created_at": utcnow(),
    }


async def record(engine: AsyncEngine, t: Tables, message: EventMessage, epoch: str | None,
                 error: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(t.dead_letters.insert(), [dead_letter_row(message, epoch, error)])


async def count(engine: AsyncEngine, t: Tables) -> int:
    async with reading(engine) as conn:
        stmt = select(func.count()).select_from(t.dead_letters)
        return int((await conn.execute(stmt)).scalar() or 0)


async def read(engine: AsyncEngine, t: Tables, limit: int, room: str | None) -> list[DeadLetter]:
    d = t.dead_letters.c
    stmt = select(t.dead_letters).order_by(d.id.desc()).limit(limit)
    if room is not None:
        stmt = stmt.where(d.room == room)
    async with reading(engine) as conn:
        rows = (await conn.execute(stmt)).all()
    return [DeadLetter(**row._mapping) for row in reversed(rows)]
