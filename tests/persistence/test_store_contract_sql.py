"""The shared EventStore contract on SQLite and PostgreSQL, plus SQL-only behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import Database
from sqlalchemy import text

from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.stores import store_from_config
from dialogue_fastapi.stores.sql import SqlStore
from dialogue_fastapi.stores.sql_engine import normalise_url
from dialogue_fastapi.stores.sql_schema import SCHEMA_REVISION, build_tables
from dialogue_fastapi.testing import FullStoreContract


class TestSqlStoreContract(FullStoreContract):
    @pytest.fixture
    async def store(self, db: Database) -> AsyncIterator[SqlStore]:
        yield db.store()


async def test_tables_are_created_with_the_prefix_and_stamped(db: Database) -> None:
    store = db.store()
    await store.start()
    try:
        assert store.schema == "created"
        async with store.engine.connect() as conn:
            stamp = text(f"SELECT version_num FROM {db.prefix}alembic_version")
            version = (await conn.execute(stamp)).scalar()
            names = await conn.run_sync(lambda c: __import__("sqlalchemy").inspect(c).get_table_names())
        assert version == SCHEMA_REVISION
        assert {n for n in names if n.startswith(db.prefix)} == set(build_tables(db.prefix).names())
    finally:
        await store.stop()
    again = db.store()
    await again.start()
    assert again.schema == "current" and not again.unclean_start
    await again.stop()


async def test_a_newer_schema_is_refused(db: Database) -> None:
    store = db.store()
    await store.start()
    async with store.engine.begin() as conn:
        await conn.execute(text(f"UPDATE {db.prefix}alembic_version SET version_num = 'r9999'"))
    await store.stop()
    with pytest.raises(RuntimeError, match="newer than this dialogue-fastapi"):
        await db.store().start()


async def test_alembic_migrations_build_exactly_the_declared_schema(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from dialogue_fastapi.stores import migrate

    await migrate.upgrade(db.url, db.prefix)
    assert await migrate.current(db.url, db.prefix) == SCHEMA_REVISION
    tables = build_tables(db.prefix)

    def diff(conn: Any) -> list[Any]:
        context = MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, _: type_ != "table" or (
                name.startswith(db.prefix) and name != tables.version_table),
            "compare_type": True})
        return list(compare_metadata(context, tables.metadata))

    store = db.store()
    await store.start()  # a migrated database is "current" for the store
    try:
        assert store.schema == "current"
        async with store.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await store.stop()


async def test_an_unclean_stop_gives_rooms_new_epochs(db: Database) -> None:
    store = db.store()
    await store.start()
    await store.append([EventMessage("r", "e", 1, seq=1, ts=1)], {"r": "first"})
    await store.engine.dispose()  # a crash: no clean stop recorded
    again = db.store()
    await again.start()
    try:
        assert again.unclean_start
        position = (await again.positions())["r"]
        assert position.seq == 1 and position.epoch != "first"
        assert (await again.positions())["r"] == position  # stored, and only once
    finally:
        await again.stop()


async def test_a_nul_character_is_stored(db: Database) -> None:
    """PostgreSQL's jsonb cannot hold U+0000: it is replaced there instead of failing the batch."""
    store = db.store()
    await store.start()
    try:
        await store.append([EventMessage("r", "e", {"t": "a\u0000b", "k": "\\u0000"}, seq=1, ts=1)],
                           {"r": "x"})
        (got,) = await store.read_after("r", 0, 1)
        assert got.data["k"] == "\\u0000"  # an escaped backslash is not a NUL
        assert got.data["t"] == ("a\u0000b" if db.backend == "sqlite" else "a\ufffdb")
    finally:
        await store.stop()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: Any) -> None:
    store = SqlStore(sqlite_url())
    await store.start()
    try:
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await store.stop()


@pytest.mark.parametrize(("given", "expected"), [
    ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
    ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
    ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
])
def test_urls_are_normalised(given: str, expected: str) -> None:
    assert normalise_url(given) == expected
    assert isinstance(store_from_config(given), SqlStore)


def test_a_sync_driver_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        store_from_config("postgresql+psycopg2://u@h/db")


def test_a_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "asyncpg" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install "dialogue-fastapi\[postgres\]"'):
        store_from_config("postgresql+asyncpg://u@h/db")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "aiosqlite" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install "dialogue-fastapi\[sqlite\]"'):
        store_from_config("sqlite+aiosqlite:///x.db")
