"""History and recovery beyond the hot window, from the store: pages, filters, all-or-nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import Database
from helpers import authenticate, ws_as

from dialogue_fastapi import Dialogue, Position, RoomConfig, define_event

message = define_event("message", history=3)  # tiny hot history: the rest is in the store
note = define_event("note", history=2)
typing = define_event("typing")  # no history at all


def make(db: Database, **settings: object) -> Dialogue:
    rooms = {
        "chat": RoomConfig(name="Chat", events=[message, note, typing]),
        "open": RoomConfig(name="Open"),  # any event name
    }
    settings.setdefault("recovery_window", 5)
    return Dialogue(rooms=rooms, events=[message, note, typing], authenticate=authenticate,
                    persistence=db.store(), **settings)


async def fill(dialogue: Dialogue, room: str = "chat", count: int = 30) -> None:
    """seq n: 'note' when n % 5 == 0, 'typing' when n % 7 == 0, else 'message'; bob sends n % 3 == 0."""
    for n in range(1, count + 1):
        name = "note" if n % 5 == 0 else "typing" if n % 7 == 0 else "message"
        await dialogue.trigger(room, name, {"n": n}, from_="bob" if n % 3 == 0 else "alice")


def seqs(messages: object) -> list[int]:
    return [m.seq for m in messages]  # type: ignore[attr-defined]


KEPT = [n for n in range(1, 31) if n % 7]  # typing keeps no history


async def test_pages_and_filters_cross_the_window(db: Database) -> None:
    dialogue = make(db)
    await dialogue.start()
    try:
        await fill(dialogue)
        assert seqs(await dialogue.history("chat", limit=10)) == KEPT[-10:]
        assert seqs(await dialogue.history("chat", limit=100)) == KEPT
        assert seqs(await dialogue.history("chat", limit=4, before=20)) == [16, 17, 18, 19]
        forward, after = [], 0
        while page := await dialogue.history("chat", limit=4, after=after):
            forward += seqs(page)
            after = page[-1].seq
        assert forward == KEPT  # forward paging without holes or repeats
        assert seqs(await dialogue.history("chat", note, limit=100)) == [5, 10, 15, 20, 25, 30]
        assert seqs(await dialogue.history("chat", typing)) == []
        bob = await dialogue.history("chat", sender="bob", limit=100)
        assert seqs(bob) == [n for n in KEPT if n % 3 == 0]
        stamps = {m.seq: m.ts for m in await dialogue.history("chat", limit=100)}
        since = datetime.fromtimestamp(stamps[10] / 1000, UTC)
        ranged = await dialogue.history("chat", limit=100, since=since, until=stamps[12])
        assert set(seqs(ranged)) >= {10, 11, 12} and all(stamps[10] <= m.ts <= stamps[12] for m in ranged)
    finally:
        await dialogue.stop()


async def test_join_recovers_from_the_store_all_or_nothing(db: Database, serve, probe) -> None:  # type: ignore[no-untyped-def]
    dialogue = make(db, max_recovery=20)
    server = await serve(dialogue)
    await fill(dialogue, count=12)
    epoch = (await dialogue.position("chat")).epoch
    bob = await probe(ws_as(server, "bob"))
    joined = await bob.request("join", room="chat", since={"seq": 2, "epoch": epoch})
    assert joined["recovered"] is True
    assert [e["seq"] for e in joined["events"]] == list(range(3, 13))  # typing too: it is a replay
    await fill(dialogue, count=20)  # seq 13..32
    carol = await probe(ws_as(server, "carol"))
    too_far = await carol.request("join", room="chat", since={"seq": 2, "epoch": epoch})
    assert too_far["recovered"] is False and too_far["events"] == []  # 30 missed > max_recovery
    assert too_far["position"]["seq"] == 32
    page = await carol.request("history", room="chat", limit=5, before=10)
    assert [e["seq"] for e in page["events"]] == [4, 5, 6, 8, 9]  # paged from the store


async def test_recovery_needs_every_event(db: Database) -> None:
    dialogue = make(db)
    await dialogue.start()
    try:
        await fill(dialogue, count=12)
        await dialogue.flush()
        store = dialogue.runtime.store
        assert store is not None
        from sqlalchemy import delete

        async with store.engine.begin() as conn:  # type: ignore[attr-defined]
            events = store.tables.events  # type: ignore[attr-defined]
            await conn.execute(delete(events).where(events.c.seq == 4))  # a hole below the window
        position = await dialogue.position("chat")
        room = dialogue.room("chat")
        assert await dialogue.runtime.history.recover(room, Position(2, position.epoch)) is None
        assert seqs(await dialogue.runtime.history.recover(room, Position(4, position.epoch)) or []) \
            == list(range(5, 13))
    finally:
        await dialogue.stop()


async def test_open_rooms_filter_by_subscription_in_the_store(db: Database, serve, probe) -> None:  # type: ignore[no-untyped-def]
    dialogue = make(db, default_event_history=10)
    server = await serve(dialogue)
    for n in range(1, 41):
        await dialogue.trigger("open", "a" if n % 4 else "b", {"n": n})
    bob = await probe(ws_as(server, "bob"))
    joined = await bob.request("join", room="open", subscriptions=["b"], history=5)
    assert [e["seq"] for e in joined["events"]] == [24, 28, 32, 36, 40]


@pytest.mark.parametrize("limit", [1, 3])
async def test_rest_history_reads_the_store(db: Database, serve, limit: int) -> None:  # type: ignore[no-untyped-def]
    import httpx

    dialogue = make(db)
    server = await serve(dialogue)
    await fill(dialogue)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        page = (await http.get("/rooms/chat/history", params={"limit": limit, "after": 1,
                                                               "token": "bob"})).json()
    assert [e["seq"] for e in page["events"]] == KEPT[1:1 + limit]
