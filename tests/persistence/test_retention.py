"""Retention by count and age, globally and per room, in bounded passes."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import Database

from dialogue_fastapi import Dialogue, Retention, RoomConfig, define_event
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.rooms.retention import MAX_STATEMENTS
from dialogue_fastapi.stores.base import AuditQuery, Rejection
from dialogue_fastapi.stores.sql import SqlStore

message = define_event("message", history=10)
DAY_MS = 86_400_000


def make(db: Database, **settings: object) -> Dialogue:
    rooms = {
        "chat": RoomConfig(name="Chat", events=[message]),
        "short": RoomConfig(name="Short", events=[message], retention=Retention(max_events=5)),
    }
    return Dialogue(rooms=rooms, allow_anonymous=True, persistence=db.store(), **settings)


def old_events(room: str, count: int, ts: int, start: int = 1) -> list[EventMessage]:
    return [EventMessage(room, "message", {"n": n}, "u", ts, n) for n in range(start, start + count)]


async def stored(store: SqlStore, room: str) -> list[int]:
    return [m.seq for m in await store.read_after(room, 0, 100_000)]


async def test_count_and_age_limits_globally_and_per_room(db: Database) -> None:
    dialogue = make(db, retention=Retention(max_events=20, max_age="7d"))
    await dialogue.start()
    store = dialogue.runtime.store
    assert isinstance(store, SqlStore) and dialogue.runtime.retention is not None
    try:
        now = int(time.time() * 1000)
        await store.append(old_events("chat", 10, now - 9 * DAY_MS), {"chat": "e"})
        await store.append(old_events("chat", 15, now, start=11), {"chat": "e"})
        await store.append(old_events("short", 12, now), {"short": "e"})
        deleted, exhausted = await dialogue.runtime.retention.run_pass()
        assert (deleted, exhausted) == (10 + 7, False)
        assert await stored(store, "chat") == list(range(11, 26))  # age cut 1..10, 15 < 20 kept
        assert await stored(store, "short") == list(range(8, 13))  # the room's own max_events
        positions = await store.positions()
        assert positions["chat"].seq == 25 and positions["short"].seq == 12  # seq continues
    finally:
        await dialogue.stop()


async def test_a_pass_does_bounded_work(db: Database) -> None:
    dialogue = make(db, retention=Retention(max_events=1), retention_batch=3)
    await dialogue.start()
    store = dialogue.runtime.store
    retention = dialogue.runtime.retention
    assert isinstance(store, SqlStore) and retention is not None
    try:
        doomed = MAX_STATEMENTS * 3 + 50
        await store.append(old_events("chat", doomed + 1, 1), {"chat": "e"})
        assert await retention.run_pass() == (MAX_STATEMENTS * 3, True)  # budget spent
        assert await retention.run_pass() == (50, False)
        assert await stored(store, "chat") == [doomed + 1]
    finally:
        await dialogue.stop()


async def test_the_background_task_prunes_events_and_rejections(db: Database) -> None:
    earlier = db.store()  # a previous run stored old events and a rejection
    await earlier.start()
    old = int(time.time() * 1000) - 120_000
    await earlier.append(old_events("chat", 30, old), {"chat": "e"})
    await earlier.record_rejections([Rejection("chat", "message", "u", old, "BLOCKED", "no")])
    await earlier.stop()
    dialogue = make(db, retention=Retention(max_age="60s"), retention_interval=0.2)
    await dialogue.start()
    store = dialogue.runtime.store
    assert isinstance(store, SqlStore)
    try:
        assert (await dialogue.trigger("chat", "message", {"n": "fresh"})).seq == 31
        await dialogue.flush()
        async with asyncio.timeout(5):
            while await store.count_events("chat") != 1:
                await asyncio.sleep(0.05)
        assert await store.audit(AuditQuery(outcome="rejected")) == []
        assert [m.data for m in await store.read_after("chat", 0, 10)] == [{"n": "fresh"}]
    finally:
        await dialogue.stop()


def test_retention_ages_are_parsed() -> None:
    assert Retention(max_age="7d").max_age == 7 * 86400
    assert Retention(max_age=90).max_age == 90
    with pytest.raises(ValueError):
        Retention(max_age="soon")
