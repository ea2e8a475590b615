"""Push registrations in SQL: ``<prefix>push_registrations`` and the rooms each asked for.

``(kind, address)`` is unique, so registering the same endpoint or token again
updates the row in place (its keys, rooms and owner). The per-user cap is
checked in the same transaction as the insert; two concurrent first
registrations of one user may both pass it (the cap is a guard against abuse,
not an invariant). ``push_rooms`` indexes the rooms a registration listed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..push.base import PushKind
from ..push.registrations import Registration, new_id, too_many
from .sql_engine import reader
from .sql_errors import classify
from .sql_schema import Tables, utcnow


def _seconds(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class SqlRegistrations:
    """:class:`~dialogue_fastapi.push.registrations.PushRegistrations` on a started SQL store."""

    def __init__(self, engine: AsyncEngine, tables: Tables) -> None:
        self._engine, self._reader = engine, reader(engine)
        self._t = tables

    def _rows(self, rows: Iterable[Any]) -> list[Registration]:
        return [Registration(r.id, r.user_id, r.kind, r.address, dict(r.keys or {}),
                             tuple(r.rooms or ()), _seconds(r.created_at) or 0.0,
                             _seconds(r.last_used_at), r.failures) for r in rows]

    async def _set_rooms(self, conn: AsyncConnection, reg_id: str, rooms: tuple[str, ...]) -> None:
        t = self._t.push_rooms
        await conn.execute(delete(t).where(t.c.registration_id == reg_id))
        if rooms:
            await conn.execute(insert(t), [{"registration_id": reg_id, "room": r} for r in rooms])

    async def save(self, user_id: str, kind: PushKind, target: str, keys: dict[str, Any],
                   rooms: Collection[str], limit: int) -> tuple[Registration, bool]:
        t = self._t.push_registrations
        wanted = tuple(dict.fromkeys(rooms))
        try:
            async with self._engine.begin() as conn:
                known = (await conn.execute(select(t.c.id).where(
                    t.c.kind == kind, t.c.address == target))).scalar()
                if known is not None:
                    await conn.execute(update(t).where(t.c.id == known).values(
                        user_id=user_id, keys=keys, rooms=list(wanted)))
                    reg_id, created = known, False
                else:
                    owned = (await conn.execute(select(func.count()).select_from(t).where(
                        t.c.user_id == user_id))).scalar_one()
                    if owned >= limit:
                        raise too_many(limit)
                    reg_id, created = new_id(), True
                    await conn.execute(insert(t).values(
                        id=reg_id, user_id=user_id, kind=kind, address=target, keys=keys,
                        rooms=list(wanted), created_at=utcnow(), failures=0))
                await self._set_rooms(conn, reg_id, wanted)
                row = (await conn.execute(select(t).where(t.c.id == reg_id))).one()
        except Exception as exc:
            raise classify(exc) from exc
        return self._rows([row])[0], created

    async def _select(self, *where: Any) -> list[Registration]:
        t = self._t.push_registrations
        async with self._reader.connect() as conn:
            rows = (await conn.execute(select(t).where(*where).order_by(t.c.created_at, t.c.id)))
            return self._rows(rows)

    async def of_user(self, user_id: str) -> list[Registration]:
        return await self._select(self._t.push_registrations.c.user_id == user_id)

    async def for_users(self, user_ids: Collection[str]) -> list[Registration]:
        if not user_ids:
            return []
        return await self._select(self._t.push_registrations.c.user_id.in_(list(user_ids)))

    async def for_room(self, room: str) -> list[Registration]:
        t, r = self._t.push_registrations, self._t.push_rooms
        return await self._select(t.c.id.in_(select(r.c.registration_id).where(r.c.room == room)))

    async def delete(self, user_id: str, registration_id: str) -> bool:
        t = self._t.push_registrations
        async with self._engine.begin() as conn:
            gone = await conn.execute(delete(t).where(t.c.id == registration_id,
                                                      t.c.user_id == user_id))
            if gone.rowcount:
                await self._set_rooms(conn, registration_id, ())
            return bool(gone.rowcount)

    async def sent(self, registration_id: str, ok: bool) -> None:
        t = self._t.push_registrations
        values: dict[str, Any] = (
            {"last_used_at": utcnow(), "failures": 0} if ok else {"failures": t.c.failures + 1})
        async with self._engine.begin() as conn:
            await conn.execute(update(t).where(t.c.id == registration_id).values(**values))

    async def prune(self, registration_id: str) -> None:
        t = self._t.push_registrations
        async with self._engine.begin() as conn:
            await conn.execute(delete(t).where(t.c.id == registration_id))
            await self._set_rooms(conn, registration_id, ())
