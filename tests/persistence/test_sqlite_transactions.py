"""SQLite transactions: one that reads and then writes never fails because another
connection wrote in between, and a read never waits for a writer.

A DEFERRED transaction that has read cannot upgrade its snapshot to write once another
connection has committed: SQLite answers "database is locked" at once, without the busy
timeout (the push registration of the chat demo failed this way under CI load). The
store begins every transaction that may write IMMEDIATE and reads DEFERRED
(``stores.sql_engine.reading``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import select, text

from dialogue_fastapi.stores.sql import SqlStore
from dialogue_fastapi.stores.sql_engine import reading

pytestmark = pytest.mark.timeout(60)


async def test_concurrent_read_then_write_transactions_all_commit(
    sqlite_url: Callable[[str], str],
) -> None:
    store = SqlStore(sqlite_url("dialogue.db"))
    await store.start()
    try:
        regs = store.push_registrations()  # save: reads (known? how many?) then writes

        async def register(i: int) -> None:
            await regs.save(f"user{i % 7}", "fcm", f"{i:040d}", {}, ["a", "b"], 1000)

        results = await asyncio.gather(*(register(i) for i in range(200)), return_exceptions=True)
        failures = [repr(r) for r in results if isinstance(r, BaseException)]
        assert failures == []
        assert sum([len(await regs.of_user(f"user{u}")) for u in range(7)]) == 200
    finally:
        await store.stop()


async def test_a_read_does_not_wait_for_an_open_write_transaction(
    sqlite_url: Callable[[str], str],
) -> None:
    store = SqlStore(sqlite_url("dialogue.db"))
    await store.start()
    try:
        rooms = store.tables.rooms
        async with store.engine.begin() as writer:  # holds the write lock until the block ends
            await writer.execute(text(f"UPDATE {rooms.name} SET updated_at = updated_at"))
            async with reading(store.engine) as conn:  # an IMMEDIATE read would wait 5 s, then fail
                found = (await conn.execute(select(rooms.c.id))).all()
            assert found == []
    finally:
        await store.stop()
