"""Users' push preferences in SQL: ``<prefix>push_preferences``, one row per user.

``put`` replaces the row (an upsert: a read then an insert or update in one
transaction; two concurrent first saves of one user may race, and the loser's
insert fails as a conflict: preferences are set by hand, one request at a time).
"""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..push.preferences import Preferences, QuietHours
from .sql_engine import reader
from .sql_errors import classify
from .sql_schema import Tables, utcnow


class SqlPreferences:
    """:class:`~dialogue_fastapi.push.preferences.PushPreferences` on a started SQL store."""

    def __init__(self, engine: AsyncEngine, tables: Tables) -> None:
        self._engine, self._reader = engine, reader(engine)
        self._t = tables.push_preferences

    async def get(self, user_id: str) -> Preferences:
        t = self._t
        async with self._reader.connect() as conn:
            row = (await conn.execute(select(t).where(t.c.user_id == user_id))).first()
        if row is None:
            return Preferences(user_id)
        quiet = (QuietHours(row.quiet_start, row.quiet_end, row.tz)
                 if row.quiet_start and row.quiet_end and row.tz else None)
        return Preferences(user_id, quiet, tuple(row.muted or ()), row.updated_at.timestamp())

    async def put(self, preferences: Preferences) -> Preferences:
        t, quiet = self._t, preferences.quiet_hours
        values = {"quiet_start": quiet.start if quiet else None,
                  "quiet_end": quiet.end if quiet else None, "tz": quiet.tz if quiet else None,
                  "muted": list(dict.fromkeys(preferences.muted)), "updated_at": utcnow()}
        try:
            async with self._engine.begin() as conn:
                found = (await conn.execute(select(t.c.user_id).where(
                    t.c.user_id == preferences.user_id))).first()
                if found is None:
                    await conn.execute(insert(t).values(user_id=preferences.user_id, **values))
                else:
                    await conn.execute(update(t).where(
                        t.c.user_id == preferences.user_id).values(**values))
        except Exception as exc:
            raise classify(exc) from exc
        return await self.get(preferences.user_id)
