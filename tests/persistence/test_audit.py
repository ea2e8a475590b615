"""The audit trail: accepted events with who/when/where, refusals when asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import Database
from helpers import authenticate, ws_as
from pydantic import BaseModel

from dialogue_fastapi import Dialogue, DialogueConfig, Reject, RoomConfig, define_event


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=10)
typing = define_event("typing")


async def no_shouting(ctx, call_next):  # type: ignore[no-untyped-def]
    if ctx.message.data.get("text", "").isupper():
        raise Reject("no shouting")
    return await call_next(ctx)


def make(db: Database, **settings: object) -> Dialogue:
    rooms = {"chat": RoomConfig(name="Chat", events=[message, typing], middleware=[no_shouting])}
    return Dialogue(rooms=rooms, authenticate=authenticate, persistence=db.store(), **settings)


async def test_accepted_and_rejected_events_are_audited(db: Database, serve, probe) -> None:  # type: ignore[no-untyped-def]
    dialogue = make(db, audit_rejections=True)
    server = await serve(dialogue)
    alice = await probe(ws_as(server, "alice"))
    await alice.request("join", room="chat")
    started = datetime.now(UTC) - timedelta(seconds=1)
    await alice.request("publish", room="chat", event="message", data={"text": "hi"},
                        meta={"client": "web"})
    assert (await alice.reply("publish", room="chat", event="message",
                              data={"text": "HI"}))["error"]["code"] == "BLOCKED"
    assert (await alice.reply("publish", room="chat", event="message",
                              data={"text": 5}))["error"]["code"] == "VALIDATION_FAILED"
    await alice.request("publish", room="chat", event="typing", data={})  # stored, no history
    await dialogue.trigger("chat", message, {"text": "from the server"})
    await dialogue.flush()

    entries = await dialogue.audit("chat", since=started)
    assert [e.ts for e in entries] == sorted(e.ts for e in entries)
    accepted = [(e.sender, e.event, e.seq) for e in entries if e.accepted]
    assert accepted == [("alice", "message", 1), ("alice", "typing", 2), ("server", "message", 3)]
    refused = [(e.sender, e.code, e.reason, e.data) for e in entries if not e.accepted]
    assert refused == [("alice", "BLOCKED", "no shouting", {"text": "HI"}),
                       ("alice", "VALIDATION_FAILED", refused[1][2], {"text": 5})]
    first = next(e for e in entries if e.accepted)
    assert first.meta == {"client": "web"} and first.room == "chat"
    refused = await dialogue.audit(outcome="rejected", sender="alice")
    assert [e.code for e in refused] == ["BLOCKED", "VALIDATION_FAILED"]
    assert [e.seq for e in await dialogue.audit("chat", outcome="accepted", limit=2)] == [2, 3]
    assert await dialogue.audit("chat", until=started) == []
    history = await dialogue.history("chat")
    assert [m.event for m in history] == ["message", "message"]  # typing keeps no history


async def test_rejections_are_not_stored_unless_asked(db: Database) -> None:
    dialogue = make(db)
    await dialogue.start()
    try:
        with pytest.raises(Exception):  # noqa: B017
            await dialogue.trigger("chat", message, {"text": "LOUD"})
        await dialogue.trigger("chat", message, {"text": "quiet"})
        await dialogue.flush()
        assert [e.accepted for e in await dialogue.audit()] == [True]
    finally:
        await dialogue.stop()


async def test_audit_needs_persistence() -> None:
    with pytest.raises(ValueError, match="audit_rejections=True needs persistence"):
        DialogueConfig(audit_rejections=True)
    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True)
    with pytest.raises(RuntimeError, match="needs a store"):
        await dialogue.audit("chat")


async def test_rate_limited_publishes_reach_the_audit(db: Database, serve, probe) -> None:  # type: ignore[no-untyped-def]
    from dialogue_fastapi import RateLimit

    dialogue = make(db, audit_rejections=True, rate_limit=RateLimit(default="1/minute"))
    server = await serve(dialogue)
    bob = await probe(ws_as(server, "bob"))
    await bob.request("join", room="chat")
    await bob.request("publish", room="chat", event="message", data={"text": "one"})
    refused = await bob.reply("publish", room="chat", event="message", data={"text": "two"})
    assert refused["error"]["code"] == "RATE_LIMITED"
    await dialogue.flush()
    rejected = await dialogue.audit("chat", outcome="rejected", sender="bob")
    assert [(e.code, e.data) for e in rejected] == [("RATE_LIMITED", {"text": "two"})]
    assert "1/minute" in rejected[0].reason
