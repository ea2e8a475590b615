"""Engines for the SQL store: URLs, SQLite pragmas, JSON, upserts and the meta table.

Schema setup is in :mod:`.sql_setup`, error classification in :mod:`.sql_errors`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import event, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from .sql_errors import classify, permanent
from .sql_schema import Tables

logger = logging.getLogger("dialogue_fastapi")
__all__ = ["check_url", "classify", "create_engine", "insert_ignore", "normalise_url", "permanent",
           "read_meta", "reader", "reading", "upsert", "write_meta"]

READ_ONLY = "dialogue_read_only"  # execution option: the transaction only reads
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg",
           "postgres": "postgresql+asyncpg"}
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def normalise_url(url: str) -> str:
    """``sqlite:///x.db`` -> ``sqlite+aiosqlite:///x.db``; ``postgresql://`` -> ``+asyncpg``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    return f"{DRIVERS.get(scheme, scheme)}://{rest}"


def check_url(url: str) -> str:
    """The normalised URL, if it names a supported async driver."""
    normalised = normalise_url(url)
    driver = normalised.partition("://")[0]
    if driver not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ValueError(
            f"unsupported database URL scheme {driver!r}: use sqlite+aiosqlite:/// or postgresql+asyncpg://"
        )
    return normalised


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _dumps_pg(value: Any) -> str:
    """PostgreSQL's jsonb refuses the NUL character: store U+FFFD instead of failing the batch."""
    dumped = orjson.dumps(value).decode()
    return _NUL.sub(r"\1\\ufffd", dumped) if "\\u0000" in dumped else dumped


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys, a busy timeout and real transactions."""
    parsed = make_url(normalise_url(url))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            options.setdefault("poolclass", StaticPool)  # one shared in-memory database
        engine = create_async_engine(parsed, json_serializer=_dumps,
                                     json_deserializer=orjson.loads, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        options.setdefault("pool_pre_ping", True)
        return create_async_engine(parsed, json_serializer=_dumps_pg,
                                   json_deserializer=orjson.loads, **options)
    raise ValueError(f"unsupported database {backend!r}: use sqlite+aiosqlite or postgresql+asyncpg")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # the driver's own transaction handling skips DDL; we emit BEGIN ourselves (below)
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across app crashes
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Real transactions on SQLite: schema creation is atomic and savepoints work.

    A transaction that may write begins IMMEDIATE: it takes the write lock first
    (waiting up to the busy timeout), so one that reads and then writes cannot
    fail with "database is locked" because another connection committed in
    between (a DEFERRED transaction cannot upgrade a stale read snapshot, and
    SQLite refuses it at once, without waiting). Reads opened with
    :func:`reading` begin DEFERRED and neither wait for nor block a writer (WAL).
    """
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def reader(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` for transactions that only read (keep it: making one costs a few µs)."""
    return engine.execution_options(**{READ_ONLY: True})


def reading(engine: AsyncEngine) -> AsyncConnection:
    """``async with reading(engine) as conn:`` a connection for a transaction that only reads
    (for occasional reads; a store keeps its :func:`reader`)."""
    return reader(engine).connect()


def insert_ignore(engine: AsyncEngine | AsyncConnection, table: Any, keys: list[str]) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING`` for the engine's dialect."""
    if engine.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=keys)
    if engine.dialect.name == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)
    return insert(table)


def upsert(
    engine: AsyncEngine | AsyncConnection, table: Any, keys: list[str], columns: Sequence[str],
    *, greatest: Sequence[str] = (),
) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` setting ``columns`` (``greatest``: keep the max)."""
    name = engine.dialect.name
    stmt = pg_insert(table) if name == "postgresql" else sqlite_insert(table)
    biggest = func.greatest if name == "postgresql" else func.max
    values: dict[str, Any] = {c: stmt.excluded[c] for c in columns}
    for column in greatest:
        values[column] = biggest(table.c[column], stmt.excluded[column])
    return stmt.on_conflict_do_update(index_elements=keys, set_=values)


async def read_meta(conn: AsyncConnection, tables: Tables, key: str) -> str | None:
    row = (await conn.execute(select(tables.meta.c.value).where(tables.meta.c.key == key))).first()
    return None if row is None else str(row[0])


async def write_meta(conn: AsyncConnection, tables: Tables, key: str, value: str) -> None:
    stmt = upsert(conn, tables.meta, ["key"], ["value"])
    await conn.execute(stmt, [{"key": key, "value": value}])
