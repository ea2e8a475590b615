"""``persistence="sqlite+aiosqlite:///file.db"`` or ``"postgresql+asyncpg://..."``: SQLAlchemy 2 async.

One store serves events, positions, runtime rooms and room state, retention
and the audit trail (``EventStore``, ``RoomStore``, ``PrunableStore``,
``AuditStore``), plus the outbox of transactional publishes
(:mod:`.sql_outbox`). Writes come in batches from the write-behind queue.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.types import EventMessage, Position
from . import sql_dead_letters as dead
from .base import AuditEntry, AuditQuery, HistoryQuery, PermanentStoreError, Rejection
from .sql_engine import (
    check_url,
    create_engine,
    insert_ignore,
    read_meta,
    reader,
    upsert,
    write_meta,
)
from .sql_errors import classify, first_line, outage
from .sql_lock import FileLock, lock_path
from .sql_push import SqlRegistrations
from .sql_push_preferences import SqlPreferences
from .sql_queries import (
    audit_entry,
    audit_selects,
    count_select,
    event_rows,
    history_select,
    message_from_row,
    position_rows,
    prune_audit,
    prune_events,
    rejection_rows,
)
from .sql_schema import DEFAULT_PREFIX, Tables, build_tables, utcnow
from .sql_setup import ensure_schema

logger = logging.getLogger("dialogue_fastapi")
RUN_STATE = "run_state"


class SqlStore:
    """The SQL event store: ``SqlStore(url_or_engine, table_prefix="dialogue_", auto_migrate=True)``.

    Pass an instance as ``persistence=`` to change the prefix, reuse your
    application's ``AsyncEngine`` (it is then not disposed on stop), or turn
    off automatic migrations. Events the database refuses as data go to the
    dead-letter table (:meth:`dead_letters`).
    """

    supports_outbox = True  # dialogue.publish_in writes rows with stores.sql_outbox

    def __init__(
        self, url: str | AsyncEngine, *, table_prefix: str = DEFAULT_PREFIX,
        auto_migrate: bool = True, **engine_options: Any,
    ) -> None:
        self.tables: Tables = build_tables(table_prefix)
        self._url = check_url(url) if isinstance(url, str) else None
        self._engine: AsyncEngine | None = None if isinstance(url, str) else url
        self._reader: AsyncEngine | None = None if self._engine is None else reader(self._engine)
        self._auto_migrate = auto_migrate
        self._engine_options = engine_options
        self.schema: str | None = None  # "created", "current" or "migrated" after start
        self.unclean_start = False  # the previous run did not stop cleanly
        self._lock: FileLock | None = None

    def require_single_writer(self) -> None:
        """Lock a SQLite file against other processes on start (the Runtime asks for it
        when its broker is the memory broker); see :mod:`.sql_lock`."""
        path = lock_path(self._url or self.engine.url.render_as_string(hide_password=False))
        self._lock = None if path is None else FileLock(path)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the SQL store is not started")
        return self._engine

    @property
    def reader(self) -> AsyncEngine:
        """The engine for transactions that only read (on SQLite they begin DEFERRED)."""
        if self._reader is None:
            raise RuntimeError("the SQL store is not started")
        return self._reader

    async def start(self) -> None:
        if self._lock is not None:
            self._lock.acquire()  # first: a second process changes nothing
        if self._engine is None:
            assert self._url is not None
            self._engine = create_engine(self._url, **self._engine_options)
            self._reader = reader(self._engine)
        try:
            async with self._engine.begin() as conn:
                self.schema = await ensure_schema(conn, self.tables, self._auto_migrate)
                self.unclean_start = await read_meta(conn, self.tables, RUN_STATE) == "running"
                await write_meta(conn, self.tables, RUN_STATE, "running")
        except BaseException:
            if self._url is not None:
                await self._engine.dispose()
                self._engine = self._reader = None
            if self._lock is not None:
                self._lock.release()
            raise

    async def stop(self) -> None:
        if self._engine is None:
            return
        try:
            async with self._engine.begin() as conn:
                await write_meta(conn, self.tables, RUN_STATE, "stopped")
        except Exception as exc:
            logger.warning("could not record a clean stop in the database: %s", exc)
        if self._url is not None:
            await self._engine.dispose()
            self._engine = self._reader = None
        if self._lock is not None:
            self._lock.release()

    def push_registrations(self) -> SqlRegistrations:
        """Push registrations in this database (``<prefix>push_registrations``); after start."""
        return SqlRegistrations(self.engine, self.tables)

    def push_preferences(self) -> SqlPreferences:
        """Users' push preferences (``<prefix>push_preferences``); after start."""
        return SqlPreferences(self.engine, self.tables)

    # EventStore ----------------------------------------------------------------
    async def append(self, messages: list[EventMessage], epochs: Mapping[str, str]) -> None:
        if not messages:
            return
        t = self.tables
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert_ignore(conn, t.events, ["room", "seq"]),
                                   event_rows(messages, epochs))
                await conn.execute(
                    upsert(conn, t.rooms, ["id"], ["epoch", "updated_at"], greatest=["last_seq"]),
                    position_rows(messages, epochs),
                )
        except Exception as exc:
            raise classify(exc) from exc

    async def query(self, query: HistoryQuery) -> list[EventMessage]:
        async with self.reader.connect() as conn:
            rows = (await conn.execute(history_select(self.tables, query))).all()
        found = [message_from_row(row) for row in rows]
        if query.after is None:
            found.reverse()
        return found

    async def read_after(self, room: str, after: int, limit: int) -> list[EventMessage]:
        return await self.query(HistoryQuery(room, limit=limit, after=after))

    async def positions(self) -> dict[str, Position]:
        r = self.tables.rooms.c
        stmt = select(r.id, r.epoch, r.last_seq).where(r.epoch.is_not(None))
        async with self.engine.begin() as conn:
            rows = (await conn.execute(stmt)).all()
            found = {row.id: Position(int(row.last_seq), row.epoch) for row in rows}
            if self.unclean_start and found:
                # events acknowledged before a crash may never have reached the database:
                # new epochs make clients resync instead of trusting reused seqs
                found = {room: Position(p.seq, secrets.token_urlsafe(8)) for room, p in found.items()}
                await conn.execute(update(self.tables.rooms).where(r.id == bindparam("room")),
                                   [{"room": k, "epoch": p.epoch} for k, p in found.items()])
                logger.warning("the previous run did not stop cleanly: %d rooms get new epochs",
                               len(found))
        self.unclean_start = False
        return found

    async def position(self, room: str) -> Position | None:
        """One room's stored position (None: never stored)."""
        r = self.tables.rooms.c
        stmt = select(r.epoch, r.last_seq).where(r.id == room, r.epoch.is_not(None))
        async with self.reader.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else Position(int(row.last_seq), row.epoch)

    async def delete_room(self, room: str) -> None:
        t = self.tables
        async with self.engine.begin() as conn:
            await conn.execute(t.events.delete().where(t.events.c.room == room))
            await conn.execute(t.rooms.delete().where(t.rooms.c.id == room))

    # RoomStore -----------------------------------------------------------------
    async def save_room(self, room: str, spec: dict[str, Any]) -> None:
        now = utcnow()
        row = {"id": room, "spec": spec, "created_by": spec.get("created_by"),
               "created_at": now, "updated_at": now}
        async with self.engine.begin() as conn:
            await conn.execute(upsert(conn, self.tables.rooms, ["id"],
                                      ["spec", "created_by", "updated_at"]), [row])

    async def load_rooms(self) -> dict[str, dict[str, Any]]:
        r = self.tables.rooms.c
        async with self.reader.connect() as conn:
            rows = (await conn.execute(select(r.id, r.spec).where(r.spec.is_not(None)))).all()
        return {row.id: dict(row.spec) for row in rows if row.spec is not None}

    async def set_state(self, room: str, state: Any) -> None:
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(upsert(conn, self.tables.rooms, ["id"], ["state", "updated_at"]),
                               [{"id": room, "state": state, "created_at": now, "updated_at": now}])

    async def get_state(self, room: str) -> Any:
        r = self.tables.rooms.c
        async with self.reader.connect() as conn:
            return (await conn.execute(select(r.state).where(r.id == room))).scalar()

    # PrunableStore ---------------------------------------------------------------
    async def prune(
        self, room: str, *, keep_last: int | None, older_than: int | None, limit: int
    ) -> int:
        if keep_last is None and older_than is None:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(prune_events(self.tables, room, keep_last, older_than, limit))
        return max(int(result.rowcount or 0), 0)

    async def prune_rejections(self, older_than: int, limit: int) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(prune_audit(self.tables, older_than, limit))
        return max(int(result.rowcount or 0), 0)

    # AuditStore ----------------------------------------------------------------
    async def record_rejections(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(self.tables.audit.insert(), rejection_rows(rejections))
        except Exception as exc:
            raise classify(exc) from exc

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        async with self.reader.connect() as conn:
            for accepted, stmt in audit_selects(self.tables, query):
                rows = (await conn.execute(stmt)).all()[::-1]  # oldest first: ties keep order
                found += [audit_entry(accepted, row) for row in rows]
        found.sort(key=lambda e: (e.ts, e.seq or 0))
        return found[-query.limit:] if query.limit > 0 else []

    async def count_events(self, room: str | None = None) -> int:
        """How many events are stored (in one room or all): for tests and operators."""
        async with self.reader.connect() as conn:
            return int((await conn.execute(count_select(self.tables, room))).scalar() or 0)

    # DeadLetterStore -----------------------------------------------------------
    async def record_dead_letter(self, message: EventMessage, epoch: str | None, error: str) -> None:
        try:
            await dead.record(self.engine, self.tables, message, epoch, error)
        except Exception as exc:
            if outage(exc):
                raise  # the writer retries the batch
            raise PermanentStoreError(first_line(exc)) from exc

    async def count_dead_letters(self) -> int:
        return await dead.count(self.engine, self.tables)

    async def dead_letters(self, limit: int = 100, room: str | None = None) -> list[dead.DeadLetter]:
        """The newest ``limit`` dead letters (of one room, or all), oldest first."""
        return await dead.read(self.engine, self.tables, limit, room)
