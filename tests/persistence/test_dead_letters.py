"""One bad row never stops the store: data errors are told from outages by the driver's
error class, the bad event goes to the dead letters, every good one is stored."""

from __future__ import annotations

import logging

import httpx
import pytest
from conftest import Database
from helpers import serve_dialogue
from sqlalchemy import text

from dialogue_fastapi import Dialogue, RoomConfig, define_event
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.stores import PermanentStoreError
from dialogue_fastapi.stores.sql import SqlStore

message = define_event("message", history=10)
pytestmark = pytest.mark.timeout(60)


def make(store: SqlStore) -> Dialogue:
    rooms = {"chat": RoomConfig(name="Chat", events=[message])}
    return Dialogue(rooms=rooms, allow_anonymous=True, persistence=store,
                    write_batch_size=500, write_interval=0.2)


def poisoned(db: Database) -> EventMessage:
    """An event the database refuses as data: a NUL on PostgreSQL (SQLite stores NULs),
    a ts beyond 64 bits on SQLite."""
    if db.backend == "postgresql":
        return EventMessage("chat", "message", {"n": "bad"}, "server", 1, idempotency_key="k\x00")
    return EventMessage("chat", "message", {"n": "bad"}, "server", 2**70)


async def inject(dialogue: Dialogue, event: EventMessage) -> EventMessage:
    """Publish below the front ends (they refuse such input): broker, then the writer."""
    rt = dialogue.runtime
    assert rt.writer is not None
    rt.writer.reserve(False)
    published = await rt.broker.publish(event, 100)
    rt.writer.put(published.message, False, published.epoch)
    return published.message


async def publish_around_a_poisoned_event(dialogue: Dialogue, db: Database) -> int:
    """50 good events, the bad one, 50 good ones, in one batch; returns the bad one's seq."""
    for i in range(50):
        await dialogue.trigger("chat", "message", {"n": i})
    bad = await inject(dialogue, poisoned(db))
    for i in range(50, 100):
        await dialogue.trigger("chat", "message", {"n": i})
    await dialogue.flush()
    return bad.seq


async def test_a_poisoned_event_is_set_aside_and_the_rest_is_stored(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    store = db.store()
    dialogue = make(store)
    server = await serve_dialogue(dialogue)
    try:
        with caplog.at_level(logging.WARNING, logger="dialogue_fastapi"):
            bad_seq = await publish_around_a_poisoned_event(dialogue, db)
        stored = await store.read_after("chat", 0, 1000)
        assert [m.data["n"] for m in stored] == list(range(100))
        assert bad_seq not in [m.seq for m in stored] and bad_seq == 51
        live = [m.data["n"] for m in await dialogue.history("chat", limit=200)]
        assert set(range(100)) <= set(live)  # (the broker's hot window still has the bad one)
        (letter,) = await store.dead_letters()
        assert (letter.room, letter.seq, letter.event, letter.sender) == ("chat", 51, "message", "server")
        assert letter.epoch == (await dialogue.position("chat")).epoch
        assert letter.event_json()["data"] == {"n": "bad"}
        if db.backend == "postgresql":
            assert "0x00" in letter.error and letter.event_json()["idempotency_key"] == "k\x00"
        else:
            assert letter.ts is None and letter.event_json()["ts"] == 2**70
        assert any("dead letter" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
        await dialogue.trigger("chat", "message", {"n": 100})  # the writer goes on
        await dialogue.flush()
        assert await store.count_events("chat") == 101
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            ready = await http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["store"] is True and ready.json()["dead_letters"] == 1
    finally:
        await server.stop()
    again = make(db.store())  # the count on /ready survives a restart
    await again.start()
    try:
        assert again.runtime.writer is not None and again.runtime.writer.dead_letters == 1
        history = await again.history("chat", limit=200)  # from the store alone now
        assert [m.data["n"] for m in history] == list(range(101))
    finally:
        await again.stop()


async def test_a_refused_dead_letter_is_logged_and_dropped(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    store = db.store()
    dialogue = make(store)
    await dialogue.start()
    try:
        async with store.engine.begin() as conn:  # the dead-letter table itself refuses
            await conn.execute(text(f"DROP TABLE {db.prefix}dead_letters"))
        with caplog.at_level(logging.WARNING, logger="dialogue_fastapi"):
            await publish_around_a_poisoned_event(dialogue, db)
        assert await store.count_events("chat") == 100
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert any("dropped" in e and "refused too" in e and "seq 51" in e for e in errors)
        assert dialogue.runtime.writer is not None and dialogue.runtime.writer.healthy
        assert dialogue.runtime.writer.dead_letters == 0
    finally:
        await dialogue.stop()


BAD_EVENTS = {
    "nul in the idempotency key": EventMessage("r", "e", {}, seq=1, ts=1, idempotency_key="a\x00"),
    "nul in the event name": EventMessage("r", "e\x00", {}, seq=1, ts=1),
    "nul in the sender": EventMessage("r", "e", {}, "u\x00", seq=1, ts=1),
    "ts beyond 64 bits": EventMessage("r", "e", {}, seq=1, ts=2**70),
    "idempotency key too long": EventMessage("r", "e", {}, seq=1, ts=1, idempotency_key="k" * 300),
    "lone surrogate": EventMessage("r", "e", {"t": "\ud800"}, seq=1, ts=1),
}
STORED_ON_SQLITE = {"nul in the idempotency key", "nul in the event name", "nul in the sender",
                    "idempotency key too long"}  # SQLite keeps NULs and ignores VARCHAR lengths


@pytest.mark.parametrize("kind", list(BAD_EVENTS))
async def test_data_errors_are_permanent_and_can_be_kept(db: Database, kind: str) -> None:
    store = db.store()
    await store.start()
    try:
        if db.backend == "sqlite" and kind in STORED_ON_SQLITE:
            await store.append([BAD_EVENTS[kind]], {"r": "x"})
            return
        with pytest.raises(PermanentStoreError):
            await store.append([BAD_EVENTS[kind]], {"r": "x"})
        await store.record_dead_letter(BAD_EVENTS[kind], "x", "refused")
        assert await store.count_dead_letters() == 1
    finally:
        await store.stop()


async def _error_of(url: str) -> Exception:
    from dialogue_fastapi.stores.sql_engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError(f"{url} was reachable")


async def test_an_unreachable_database_is_an_outage_not_bad_data(tmp_path: object) -> None:
    from pg_helpers import need_postgres

    from dialogue_fastapi.stores.sql_errors import outage, permanent

    await need_postgres()
    for url in ("postgresql+asyncpg://postgres@127.0.0.1:1/test",
                f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db"):
        exc = await _error_of(url)
        assert outage(exc) and not permanent(exc), (url, repr(exc))
