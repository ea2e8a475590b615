"""Restart continuity: seq continues, the epoch stays, clients recover across a restart."""

from __future__ import annotations

import pytest
from conftest import Database
from helpers import authenticate, ws_as
from helpers import serve_dialogue as serve

from dialogue_fastapi import Dialogue, Position, RoomConfig, define_event
from dialogue_fastapi.testing import WsProbe

message = define_event("message", history=100)
typing = define_event("typing")

pytestmark = pytest.mark.timeout(30)


def make(db: Database, **settings: object) -> Dialogue:
    rooms = {"chat": RoomConfig(name="Chat", events=[message, typing], sync_history_on_join=20)}
    return Dialogue(rooms=rooms, events=[message, typing], authenticate=authenticate,
                    persistence=db.store(), **settings)


async def test_seq_and_epoch_continue_and_since_recovers_across_a_restart(db: Database) -> None:
    first = make(db)
    server = await serve(first)
    bob = await WsProbe.open(ws_as(server, "bob"))
    try:
        joined = await bob.request("join", room="chat")
        for i in range(1, 6):
            await first.trigger("chat", "message", {"n": i})
        seen = await bob.events(3)  # bob saw 1..3, then lost his connection
        before = Position(seen[-1]["seq"], joined["position"]["epoch"])
    finally:
        await bob.close()
    await server.stop()  # graceful: the queue is flushed

    second = make(db)
    server = await serve(second, server.port)
    try:
        assert await second.position("chat") == Position(5, before.epoch)
        assert (await second.trigger("chat", "message", {"n": 6})).seq == 6
        bob = await WsProbe.open(ws_as(server, "bob"))
        rejoined = await bob.request("join", room="chat", since=before.to_dict())
        assert rejoined["recovered"] is True
        assert [e["seq"] for e in rejoined["events"]] == [4, 5, 6]  # 4, 5 from the store
        assert [e["data"]["n"] for e in rejoined["events"]] == [4, 5, 6]
        await second.trigger("chat", "message", {"n": 7})
        assert [e["seq"] for e in await bob.events(1)] == [7]  # no gap, no duplicate
        page = await bob.request("history", room="chat", limit=100)
        assert [e["seq"] for e in page["events"]] == list(range(1, 8))
        alice = await WsProbe.open(ws_as(server, "alice"))
        synced = await alice.request("join", room="chat")  # sync_history_on_join from the store
        assert [e["seq"] for e in synced["events"]] == list(range(1, 8))
        await alice.close()
        await bob.close()
    finally:
        await server.stop()


async def test_runtime_rooms_and_room_state_come_back(db: Database) -> None:
    first = make(db)
    await first.start()
    await first.create_room("book-club", RoomConfig(name="Book club", events=[message],
                                                    max_size=5, durable=True), created_by="alice")
    await first.trigger("book-club", "message", {"text": "chapter one"})
    await first.set_room_state("book-club", {"chapter": 1})
    await first.set_room_state("chat", {"topic": "general"})
    await first.stop()

    second = make(db)
    await second.start()
    try:
        room = second.room("book-club")
        assert room.created_by == "alice" and room.config.max_size == 5 and room.config.durable
        assert room.config.event_names() == ["message"]
        assert await second.get_room_state("book-club") == {"chapter": 1}
        assert await second.get_room_state("chat") == {"topic": "general"}
        assert [m.data for m in await second.history("book-club")] == [{"text": "chapter one"}]
        assert (await second.trigger("book-club", "message", {"text": "two"})).seq == 2
        await second.delete_room("book-club")
    finally:
        await second.stop()
    third = make(db)
    await third.start()
    try:
        assert "book-club" not in [r.id for r in third.rooms()]
    finally:
        await third.stop()


async def crash(dialogue: Dialogue) -> None:
    """Like kill -9: background work ends, connections drop, no clean stop is recorded."""
    rt = dialogue.runtime
    for background in (rt.outbox, rt.retention, rt.writer):
        if background is not None:
            await background.stop()
    await rt.store.engine.dispose()  # type: ignore[union-attr]
    if rt.store._lock is not None:  # type: ignore[union-attr]
        rt.store._lock.release()  # type: ignore[union-attr]  # the OS frees a dead process's lock


async def test_after_a_crash_clients_resync_instead_of_trusting_seqs(db: Database) -> None:
    first = make(db)
    await first.start()
    for i in range(3):
        await first.trigger("chat", "message", {"n": i})
    before = await first.position("chat")
    await first.flush()
    await crash(first)

    second = make(db)
    await second.start()
    try:
        after = await second.position("chat")
        assert after.seq == 3 and after.epoch != before.epoch
        assert await second.runtime.history.recover(second.room("chat"), before) is None
    finally:
        await second.stop()
