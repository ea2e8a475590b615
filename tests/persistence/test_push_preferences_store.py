"""Push preferences: one contract for the memory and SQL forms, and r0004 upgrading an r0003
database that holds a registration."""

from __future__ import annotations

from conftest import Database
from sqlalchemy import JSON, Text, column, insert, select, table, text
from sqlalchemy.dialects.postgresql import JSONB

from dialogue_fastapi.push.preferences import (
    MemoryPreferences,
    Preferences,
    PushPreferences,
    QuietHours,
)
from dialogue_fastapi.stores import migrate
from dialogue_fastapi.stores.sql_engine import create_engine
from dialogue_fastapi.stores.sql_push import SqlRegistrations
from dialogue_fastapi.stores.sql_push_preferences import SqlPreferences
from dialogue_fastapi.stores.sql_schema import SCHEMA_REVISION, utcnow

NIGHT = QuietHours("22:00", "07:00", "Europe/Paris")


async def check_contract(prefs: PushPreferences) -> None:
    assert await prefs.get("alice") == Preferences("alice")
    saved = await prefs.put(Preferences("alice", NIGHT, ("design", "dm:alice:bob", "design")))
    assert (saved.quiet_hours, saved.muted) == (NIGHT, ("design", "dm:alice:bob"))
    assert saved.updated_at is not None and saved.updated_at > 0
    assert await prefs.get("alice") == saved
    assert await prefs.get("bob") == Preferences("bob")
    cleared = await prefs.put(Preferences("alice", None, ("ops",)))
    assert (cleared.quiet_hours, cleared.muted) == (None, ("ops",))
    assert await prefs.get("alice") == cleared
    await prefs.put(Preferences("bob", QuietHours("12:00", "13:30", "UTC")))
    assert (await prefs.get("alice")).muted == ("ops",)
    assert (await prefs.get("bob")).quiet_hours == QuietHours("12:00", "13:30", "UTC")


async def test_memory_preferences_keep_the_contract() -> None:
    await check_contract(MemoryPreferences())


async def test_sql_preferences_keep_the_contract(db: Database) -> None:
    store = db.store()
    await store.start()
    try:
        await check_contract(SqlPreferences(store.engine, store.tables))
        assert (await store.push_preferences().get("bob")).quiet_hours is not None  # the same rows
    finally:
        await store.stop()


async def test_r0003_with_a_registration_is_upgraded(db: Database) -> None:
    await migrate.upgrade(db.url, db.prefix, "r0003")
    json = JSON().with_variant(JSONB(), "postgresql").with_variant(Text(), "sqlite")  # as r0001
    old = table(f"{db.prefix}push_registrations", column("id"), column("user_id"), column("kind"),
                column("address"), column("keys", json), column("rooms", json),
                column("created_at"), column("failures"))
    rooms = table(f"{db.prefix}push_rooms", column("registration_id"), column("room"))
    sqlite = db.backend == "sqlite"
    engine = create_engine(db.url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(old), [
                {"id": "ps_old", "user_id": "alice", "kind": "webpush",
                 "address": "https://p.example/1",
                 "keys": '{"p256dh": "k", "auth": "a"}' if sqlite else {"p256dh": "k", "auth": "a"},
                 "rooms": '["design"]' if sqlite else ["design"], "created_at": utcnow(),
                 "failures": 2}])
            await conn.execute(insert(rooms), [{"registration_id": "ps_old", "room": "design"}])
    finally:
        await engine.dispose()
    store = db.store()
    await store.start()  # migrates on start
    try:
        assert store.schema == "migrated"
        regs = SqlRegistrations(store.engine, store.tables)
        (kept,) = await regs.of_user("alice")
        assert (kept.id, kept.target, kept.keys, kept.rooms, kept.failures) == (
            "ps_old", "https://p.example/1", {"p256dh": "k", "auth": "a"}, ("design",), 2)
        assert [r.id for r in await regs.for_room("design")] == ["ps_old"]
        prefs = store.push_preferences()
        assert await prefs.get("alice") == Preferences("alice")
        await prefs.put(Preferences("alice", NIGHT, ("design",)))
        assert (await prefs.get("alice")).quiet_hours == NIGHT
        async with store.engine.connect() as conn:
            version = (await conn.execute(
                text(f"SELECT version_num FROM {db.prefix}alembic_version"))).scalar()
            rows = (await conn.execute(select(store.tables.push_preferences))).all()
        assert version == SCHEMA_REVISION == "r0004" and len(rows) == 1
    finally:
        await store.stop()
