"""Transactional publish: fan-out only after the caller's commit, exactly once per key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from conftest import Database
from helpers import authenticate, ws_as
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from dialogue_fastapi import Dialogue, DialogueError, RoomConfig, define_event
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.stores import sql_outbox
from dialogue_fastapi.stores.sql import SqlStore


class Order(BaseModel):
    order_id: int


placed = define_event("order_placed", Order, history=50)
pytestmark = pytest.mark.timeout(30)


def make(db: Database) -> Dialogue:
    rooms = {"orders": RoomConfig(name="Orders", events=[placed])}
    return Dialogue(rooms=rooms, authenticate=authenticate, persistence=db.store())


@pytest.fixture
async def app_engine(db: Database) -> AsyncIterator[AsyncEngine]:
    """The application's own engine on the same database, with its own table."""
    engine = create_async_engine(db.url)
    async with engine.begin() as conn:
        await conn.run_sync(APP.create_all)
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(APP.drop_all)
    await engine.dispose()


APP = MetaData()
ORDERS = Table("app_orders_outbox_test", APP, Column("id", Integer, primary_key=True),
               Column("item", String(50)))


async def outbox_rows(store: SqlStore) -> list[tuple[int | None, int | None]]:
    o = store.tables.outbox.c
    async with store.engine.connect() as conn:
        return [(r.delivered_at is not None, r.seq) for r in
                (await conn.execute(select(o.delivered_at, o.seq).order_by(o.id))).all()]


async def test_rollback_delivers_nothing_and_commit_delivers_once(
    db: Database, app_engine: AsyncEngine, serve, probe,  # type: ignore[no-untyped-def]
) -> None:
    dialogue = make(db)
    server = await serve(dialogue)
    bob = await probe(ws_as(server, "bob"))
    await bob.request("join", room="orders")
    store = dialogue.runtime.store
    assert isinstance(store, SqlStore)

    with pytest.raises(RuntimeError, match="changed my mind"):
        async with AsyncSession(app_engine) as session, session.begin():
            await session.execute(ORDERS.insert().values(id=1, item="book"))
            pending = await dialogue.publish_in(session, "orders", placed, {"order_id": 1})
            assert pending is not None and pending.seq == 0
            raise RuntimeError("changed my mind")
    assert await bob.nothing(wait=0.5)
    assert await outbox_rows(store) == [] and (await dialogue.position("orders")).seq == 0

    async with AsyncSession(app_engine) as session, session.begin():
        await session.execute(ORDERS.insert().values(id=2, item="pen"))
        await dialogue.publish_in(session, "orders", placed, {"order_id": 2})
        await dialogue.publish_in(session, "orders", placed, {"order_id": 3})
        assert await bob.nothing(wait=0.2)  # not before the commit
    events = await bob.events(2)
    assert [(e["seq"], e["data"]["order_id"]) for e in events] == [(1, 2), (2, 3)]
    assert await bob.nothing(wait=0.3)
    assert await outbox_rows(store) == [(True, 1), (True, 2)]
    relay = dialogue.runtime.outbox
    assert relay is not None
    relay.grace_ms = 0
    assert await relay.run_pass() == 0  # nothing left: never delivered twice
    assert await bob.nothing(wait=0.2)
    async with app_engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(ORDERS))).scalar() == 1


async def test_invalid_data_fails_inside_the_transaction(db: Database, app_engine: AsyncEngine) -> None:
    dialogue = make(db)
    await dialogue.start()
    try:
        async with AsyncSession(app_engine) as session:
            with pytest.raises(DialogueError) as refused:
                await dialogue.publish_in(session, "orders", placed, {"order_id": "x"})
            assert refused.value.code == "VALIDATION_FAILED"
            await session.rollback()
        assert await outbox_rows(dialogue.runtime.store) == []  # type: ignore[arg-type]
    finally:
        await dialogue.stop()


async def test_the_relay_delivers_rows_a_crash_left_behind_once(
    db: Database, app_engine: AsyncEngine,
) -> None:
    crashed = db.store()  # the previous process: rows committed, fan-out never happened
    await crashed.start()
    async with AsyncSession(app_engine) as session, session.begin():
        for n in (10, 11):
            await sql_outbox.add(session, crashed.tables, EventMessage(
                "orders", "order_placed", {"order_id": n}, "server", 1, idempotency_key=f"k{n}"))
    async with AsyncSession(app_engine) as session, session.begin():  # this one's event was
        stored_row = await sql_outbox.add(session, crashed.tables, EventMessage(  # stored, not marked
            "orders", "order_placed", {"order_id": 12}, "server", 1, idempotency_key="k12"))
    await crashed.append([EventMessage("orders", "order_placed", {"order_id": 12}, "server", 1,
                                       seq=1, idempotency_key="k12")], {"orders": "e"})
    await crashed.stop()

    dialogue = make(db)
    delivered: list[int] = []
    dialogue.on("orders", placed, lambda m: delivered.append(m.data["order_id"]))
    await dialogue.start()  # the relay's first pass runs at once
    store, relay = dialogue.runtime.store, dialogue.runtime.outbox
    assert isinstance(store, SqlStore) and relay is not None
    try:
        async with asyncio.timeout(5):
            while [d for d, _ in await outbox_rows(store)] != [True, True, True]:
                await asyncio.sleep(0.05)
        assert delivered == [10, 11]  # 12 was already stored: marked, not published again
        assert await outbox_rows(store) == [(True, 2), (True, 3), (True, 1)]
        assert (await sql_outbox.get(store.engine, store.tables, stored_row)).delivered  # type: ignore[union-attr]
        relay.grace_ms = 0
        assert await relay.run_pass() == 0  # nothing is ever delivered twice
        assert delivered == [10, 11]
    finally:
        await dialogue.stop()


async def test_publish_in_needs_the_sql_store() -> None:
    dialogue = Dialogue(rooms={"orders": RoomConfig(name="Orders")}, allow_anonymous=True,
                        persistence="memory://")
    with pytest.raises(RuntimeError, match="publish_in needs the SQL store"):
        await dialogue.publish_in(object(), "orders", "x", {})
