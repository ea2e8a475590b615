"""r0002 (dead letters) upgrades a database at r0001 that holds data, on both backends."""

from __future__ import annotations

import pytest
from conftest import Database
from sqlalchemy import text

from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.stores import migrate
from dialogue_fastapi.stores.sql_engine import create_engine
from dialogue_fastapi.stores.sql_schema import SCHEMA_REVISION, build_tables, utcnow


async def database_at_r0001_with_data(db: Database) -> None:
    await migrate.upgrade(db.url, db.prefix, "r0001")
    t = build_tables(db.prefix)
    engine = create_engine(db.url)
    try:
        async with engine.begin() as conn:
            await conn.execute(t.events.insert(), [
                {"room": "chat", "seq": n, "epoch": "e1", "event": "message", "data": {"n": n},
                 "sender": "alice", "meta": None, "ts": n, "idempotency_key": None}
                for n in (1, 2)])
            await conn.execute(t.rooms.insert(), [{"id": "chat", "epoch": "e1", "last_seq": 2,
                                                   "created_at": utcnow(), "updated_at": utcnow()}])
            await conn.execute(t.meta.insert(), [{"key": "run_state", "value": "stopped"}])
    finally:
        await engine.dispose()
    assert await migrate.current(db.url, db.prefix) == "r0001"


@pytest.mark.parametrize("how", ["on start", "with the command"])
async def test_r0001_with_data_is_upgraded(db: Database, how: str) -> None:
    await database_at_r0001_with_data(db)
    if how == "with the command":
        await migrate.upgrade(db.url, db.prefix)  # what the CLI's "upgrade" runs
    store = db.store()
    await store.start()
    try:
        assert store.schema == ("migrated" if how == "on start" else "current")
        assert [m.data for m in await store.read_after("chat", 0, 10)] == [{"n": 1}, {"n": 2}]
        assert (await store.positions())["chat"].epoch == "e1"  # a clean stop: epochs kept
        assert await store.count_dead_letters() == 0
        await store.record_dead_letter(EventMessage("chat", "message", None, seq=3), "e1", "x")
        assert [d.seq for d in await store.dead_letters()] == [3]
        async with store.engine.connect() as conn:
            version = (await conn.execute(
                text(f"SELECT version_num FROM {db.prefix}alembic_version"))).scalar()
        assert version == SCHEMA_REVISION  # through every later revision too
    finally:
        await store.stop()
