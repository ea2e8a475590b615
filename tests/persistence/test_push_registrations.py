"""Push registrations: one contract for the memory and SQL forms, and r0003 upgrading r0002 with data."""

from __future__ import annotations

import pytest
from conftest import Database
from sqlalchemy import JSON, Text, column, insert, select, table, text
from sqlalchemy.dialects.postgresql import JSONB

from dialogue_fastapi.core.errors import Forbidden
from dialogue_fastapi.push.registrations import MemoryRegistrations, PushRegistrations
from dialogue_fastapi.stores import migrate
from dialogue_fastapi.stores.sql_engine import create_engine
from dialogue_fastapi.stores.sql_push import SqlRegistrations
from dialogue_fastapi.stores.sql_schema import SCHEMA_REVISION, utcnow

KEYS = {"p256dh": "BPk", "auth": "au"}


async def check_contract(regs: PushRegistrations) -> None:
    first, created = await regs.save("alice", "webpush", "https://push.example/a", KEYS, ["design"], 3)
    assert created and first.user_id == "alice" and first.rooms == ("design",)
    again, created = await regs.save("alice", "webpush", "https://push.example/a", {"p256dh": "x"},
                                      ["ops", "ops"], 3)
    assert not created and again.id == first.id and again.keys == {"p256dh": "x"}
    assert again.rooms == ("ops",)
    assert await regs.for_room("design") == [] and [r.id for r in await regs.for_room("ops")] == [first.id]
    await regs.save("alice", "fcm", "f" * 40, {}, [], 3)
    await regs.save("alice", "apns", "ab" * 32, {"sandbox": True}, [], 3)
    with pytest.raises(Forbidden, match="the limit is 3"):
        await regs.save("alice", "fcm", "g" * 40, {}, [], 3)
    # the same device signed in by bob moves to him (and frees a place of alice's)
    moved, created = await regs.save("bob", "fcm", "f" * 40, {}, [], 3)
    assert not created and moved.user_id == "bob"
    assert [r.kind for r in await regs.of_user("alice")] == ["webpush", "apns"]
    assert {r.user_id for r in await regs.for_users(["alice", "bob", "carol"])} == {"alice", "bob"}
    assert not await regs.delete("alice", moved.id)  # someone else's: untouched
    await regs.sent(first.id, ok=False)
    await regs.sent(first.id, ok=False)
    assert [r.failures for r in await regs.of_user("alice") if r.id == first.id] == [2]
    await regs.sent(first.id, ok=True)
    (after,) = [r for r in await regs.of_user("alice") if r.id == first.id]
    assert after.failures == 0 and after.last_success_at is not None
    assert await regs.delete("alice", first.id)
    assert await regs.for_room("ops") == []
    await regs.prune(moved.id)
    assert await regs.of_user("bob") == []


async def test_memory_registrations_keep_the_contract() -> None:
    await check_contract(MemoryRegistrations())


async def test_sql_registrations_keep_the_contract(db: Database) -> None:
    store = db.store()
    await store.start()
    try:
        await check_contract(SqlRegistrations(store.engine, store.tables))
    finally:
        await store.stop()


async def test_r0002_with_registrations_is_upgraded(db: Database) -> None:
    await migrate.upgrade(db.url, db.prefix, "r0002")
    json = JSON().with_variant(JSONB(), "postgresql").with_variant(Text(), "sqlite")  # as r0001
    old = table(f"{db.prefix}push_registrations", column("id"), column("user_id"), column("kind"),
                column("address"), column("keys", json), column("rooms", json), column("created_at"))
    engine = create_engine(db.url)
    try:
        async with engine.begin() as conn:
            rooms = '["design", "ops"]'
            await conn.execute(insert(old), [
                {"id": "ps_old", "user_id": "alice", "kind": "webpush", "address": "https://p.example/1",
                 "keys": '{"p256dh": "k", "auth": "a"}' if db.backend == "sqlite" else {"p256dh": "k",
                                                                                        "auth": "a"},
                 "rooms": rooms if db.backend == "sqlite" else ["design", "ops"],
                 "created_at": utcnow()}])
    finally:
        await engine.dispose()
    store = db.store()
    await store.start()  # migrates on start
    try:
        assert store.schema == "migrated"
        regs = SqlRegistrations(store.engine, store.tables)
        (kept,) = await regs.of_user("alice")
        assert (kept.id, kept.target, kept.keys, kept.rooms, kept.failures) == (
            "ps_old", "https://p.example/1", {"p256dh": "k", "auth": "a"}, ("design", "ops"), 0)
        assert [r.id for r in await regs.for_room("ops")] == ["ps_old"]
        async with store.engine.connect() as conn:
            version = (await conn.execute(
                text(f"SELECT version_num FROM {db.prefix}alembic_version"))).scalar()
            outbox = (await conn.execute(select(store.tables.push_outbox))).all()
        assert version == SCHEMA_REVISION and outbox == []  # through r0004 too
    finally:
        await store.stop()
