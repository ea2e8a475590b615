"""The database going away and coming back, on SQLite and on the real PostgreSQL.

Publishes keep working while it is away (up to ``write_max_pending``), durable
publishes get UNAVAILABLE, and every acknowledged event is stored exactly
once when it is back. Each outage is bounded in time.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from helpers import authenticate, ws_as
from pg_helpers import PG_URL, drop_tables, need_postgres
from sqlalchemy import text
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from dialogue_fastapi import Dialogue, RoomConfig, define_event
from dialogue_fastapi.stores.sql import SqlStore
from dialogue_fastapi.stores.sql_engine import create_engine
from dialogue_fastapi.testing import WsProbe

message = define_event("message", history=50)
pytestmark = pytest.mark.timeout(40)


def make(store: SqlStore, **settings: object) -> Dialogue:
    rooms = {"chat": RoomConfig(name="Chat", events=[message]),
             "ledger": RoomConfig(name="Ledger", events=[message], durable=True)}
    return Dialogue(rooms=rooms, authenticate=authenticate, persistence=store,
                    durable_timeout=1.0, **settings)


async def wait_for(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def through_an_outage(dialogue: Dialogue, serve, go_away, come_back) -> None:  # type: ignore[no-untyped-def]
    """The same scenario for every backend; ``go_away``/``come_back`` cut the database."""
    store = dialogue.runtime.store
    writer = dialogue.runtime.writer
    assert isinstance(store, SqlStore) and writer is not None
    server = await serve(dialogue)
    alice = await WsProbe.open(ws_as(server, "alice"))
    await alice.request("join", room="chat")
    await alice.request("join", room="ledger")
    for i in range(5):
        await alice.request("publish", room="chat", event="message", data={"n": i})
    await dialogue.flush()

    await go_away()
    for i in range(5, 40):  # acknowledged while the database is away
        ack = await alice.request("publish", room="chat", event="message", data={"n": i})
        assert ack["seq"] == i + 1
    await wait_for(lambda: _is(writer.failing))
    refused = await alice.reply("publish", room="ledger", event="message", data={"n": 0})
    assert refused["error"]["code"] == "UNAVAILABLE"
    page = await alice.request("history", room="chat", limit=100)  # the queue is readable
    assert [e["seq"] for e in page["events"]] == list(range(1, 41))

    await come_back()
    await wait_for(lambda: _stored(store, "chat", 40))
    assert not writer.failing
    ack = await alice.request("publish", room="ledger", event="message", data={"n": 1})
    assert await store.count_events("ledger") == 1 and ack["seq"] == 1
    stored = await store.read_after("chat", 0, 100)
    assert [m.data["n"] for m in stored] == list(range(40))  # all of them, once, in order
    await alice.close()


async def _is(value: bool) -> bool:
    return value


async def _stored(store: SqlStore, room: str, count: int) -> bool:
    try:
        return await store.count_events(room) == count
    except Exception:
        return False


async def test_sqlite_file_unavailable_then_back(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "db"
    home.mkdir()
    store = SqlStore(f"sqlite+aiosqlite:///{home / 'chat.db'}")
    dialogue = make(store)

    async def go_away() -> None:
        home.rename(tmp_path / "gone")  # the path no longer exists...
        await store.engine.dispose()  # ...and no pooled connection still holds the file

    async def come_back() -> None:
        (tmp_path / "gone").rename(home)

    await through_an_outage(dialogue, serve, go_away, come_back)


async def test_postgresql_unreachable_then_back(serve) -> None:  # type: ignore[no-untyped-def]
    await need_postgres()
    url = make_url(PG_URL)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    prefix = f"o{os.urandom(4).hex()}_"
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    dialogue = make(SqlStore(proxied, table_prefix=prefix, connect_args={"timeout": 2}))
    try:
        await through_an_outage(dialogue, serve, proxy.cut, proxy.start)
    finally:
        await proxy.cut()
        await drop_tables(PG_URL, prefix)


async def test_postgresql_backends_terminated_midstream() -> None:
    await need_postgres()
    prefix = f"k{os.urandom(4).hex()}_"
    app_name = f"dialogue-{prefix}"
    store = SqlStore(PG_URL, table_prefix=prefix,
                     connect_args={"server_settings": {"application_name": app_name}})
    dialogue = make(store, write_batch_size=20, write_interval=0.0)
    admin = create_engine(PG_URL)
    await dialogue.start()
    try:
        killed = 0
        for i in range(300):
            await dialogue.trigger("chat", "message", {"n": i})
            if i % 60 == 30:
                async with admin.begin() as conn:
                    killed += len((await conn.execute(text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"), {"name": app_name})).all())
                await asyncio.sleep(0.05)
        await wait_for(lambda: _stored(store, "chat", 300))
        assert killed > 0
        assert [m.data["n"] for m in await store.read_after("chat", 0, 1000)] == list(range(300))
    finally:
        await dialogue.stop()
        await admin.dispose()
        await drop_tables(PG_URL, prefix)
