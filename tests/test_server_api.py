"""The server-side API: trigger, on, direct messages, user lookups, hooks, before/after_each."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from helpers import Calls, authenticate, ws_as
from pydantic import BaseModel, Field

from dialogue_fastapi import (
    Dialogue,
    DialogueError,
    EventMessage,
    Hooks,
    Identity,
    Reject,
    RoomConfig,
    define_event,
)
from dialogue_fastapi.testing import ProbeError


class Text(BaseModel):
    text: str = Field(min_length=1)


message = define_event("message", Text, history=10)
typing = define_event("typing")


def make_dialogue(hooks: Hooks | None = None) -> Dialogue:
    return Dialogue(rooms={"chat": RoomConfig(name="Chat", events=[message, typing]),
                           "other": RoomConfig(name="Other")},
                    authenticate=authenticate, hooks=hooks or Hooks())


async def test_trigger_returns_the_published_message(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    bob = await probe(ws_as(srv, "bob"))
    await bob.request("join", room="chat")
    sent = await dialogue.trigger("chat", message, {"text": "hello"}, meta={"k": "v"})
    assert isinstance(sent, EventMessage)
    assert (sent.room, sent.event, sent.seq, sent.from_) == ("chat", "message", 1, "server")
    assert sent.data == {"text": "hello"} and sent.ts > 0
    second = await dialogue.trigger("chat", "typing", {"any": ["json"]})
    assert second.seq == 2
    frames = await bob.events(2)
    assert frames[0] == {"op": "event", "room": "chat", "event": "message",
                         "data": {"text": "hello"}, "from": "server", "ts": sent.ts, "seq": 1,
                         "meta": {"k": "v"}}
    assert frames[1]["from"] == "server" and frames[1]["data"] == {"any": ["json"]}
    as_user = await dialogue.trigger("chat", "typing", {}, from_="alice")
    assert as_user.from_ == "alice" and (await bob.next("event", 2))["from"] == "alice"


async def test_trigger_validates_like_a_client_publish(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    bob = await probe(ws_as(srv, "bob"))
    await bob.request("join", room="chat")
    with pytest.raises(DialogueError) as invalid:
        await dialogue.trigger("chat", "message", {"text": ""})
    assert invalid.value.code == "VALIDATION_FAILED"
    assert invalid.value.message
    with pytest.raises(DialogueError) as not_allowed:
        await dialogue.trigger("chat", "shout", {"text": "x"})
    assert not_allowed.value.code == "EVENT_NOT_ALLOWED"
    assert (await dialogue.position("chat")).seq == 0  # nothing was published
    assert await bob.nothing("event", 0.1)


async def test_trigger_parses_data_with_the_schema(serve, probe):
    class Count(BaseModel):
        n: int

    counted = define_event("count", Count)
    dialogue = Dialogue(rooms={"c": RoomConfig(name="C", events=[counted])},
                        authenticate=authenticate)
    srv = await serve(dialogue)
    bob = await probe(ws_as(srv, "bob"))
    await bob.request("join", room="c")
    sent = await dialogue.trigger("c", counted, {"n": "7", "extra": "dropped"})
    assert sent.data == {"n": 7}
    assert (await bob.next("event", 2))["data"] == {"n": 7}


async def test_on_runs_once_per_event_and_unsubscribes(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    seen: list[tuple[str, int, object]] = []
    async_seen: list[int] = []

    async def async_handler(msg: EventMessage) -> None:
        await asyncio.sleep(0)
        async_seen.append(msg.seq)

    stop = dialogue.on("chat", message, lambda msg: seen.append((msg.from_, msg.seq, msg.data)))
    stop_async = dialogue.on("chat", "message", async_handler)
    # several connections in the room must not multiply the handler calls
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    for client in (alice, bob):
        await client.request("join", room="chat")
    await alice.request("publish", room="chat", event="message", data={"text": "a"})
    await alice.request("publish", room="chat", event="typing", data={})  # other event
    await dialogue.trigger("chat", "message", {"text": "s"})
    await dialogue.trigger("other", "message", {"text": "elsewhere"})  # other room
    assert seen == [("alice", 1, {"text": "a"}), ("server", 3, {"text": "s"})]
    assert async_seen == [1, 3]
    stop()
    stop_async()
    await alice.request("publish", room="chat", event="message", data={"text": "b"})
    assert len(seen) == 2 and async_seen == [1, 3]


async def test_send_to_user_reaches_every_connection_of_that_user_only(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice_tab1 = await probe(ws_as(srv, "alice"))
    alice_tab2 = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice_tab1.request("join", room="chat")  # in a room or not: both get it
    await dialogue.send_to_user("alice", "notice", {"text": "you have mail"})
    for tab in (alice_tab1, alice_tab2):
        frame = await tab.next("direct", 2)
        assert set(frame) == {"op", "event", "data", "from", "ts"}
        assert frame["event"] == "notice" and frame["data"] == {"text": "you have mail"}
        assert frame["from"] == "server" and frame["ts"] > 0
    assert await bob.nothing("direct", 0.15)
    assert await alice_tab1.nothing("direct", 0.05)  # exactly once per connection


async def test_disconnect_user_closes_that_users_connections(serve, probe):
    calls = Calls()
    dialogue = make_dialogue(Hooks(on_disconnected=calls.sync("disconnected")))
    srv = await serve(dialogue)
    alice_tab1 = await probe(ws_as(srv, "alice"))
    alice_tab2 = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice_tab1.request("join", room="chat")
    await dialogue.disconnect_user("alice", reason="banned")
    for tab in (alice_tab1, alice_tab2):
        frame = await tab.next("disconnect", 2)
        assert frame == {"op": "disconnect", "code": 4004, "reason": "banned", "reconnect": False}
        code, reason = await tab.closed(2)
        assert code == 4004 and reason == "banned"
    await calls.wait_for("disconnected", 2)
    assert await dialogue.get_clients("alice") == []
    assert not await dialogue.is_in_room("alice", "chat")
    assert await bob.request("ping") == {}  # others stay connected


async def test_get_clients_lists_the_users_live_connections(serve, probe):
    calls = Calls()
    dialogue = make_dialogue(Hooks(on_disconnected=calls.sync("disconnected")))
    srv = await serve(dialogue)
    tab1 = await probe(ws_as(srv, "alice"))
    tab2 = await probe(ws_as(srv, "alice"))
    await probe(ws_as(srv, "bob"))
    await tab2.request("ping")  # the server has registered both tabs
    assert sorted(await dialogue.get_clients("alice")) == sorted(
        [tab1.hello["client_id"], tab2.hello["client_id"]])
    assert await dialogue.get_clients("nobody") == []
    await tab1.close()
    await calls.wait_for("disconnected", 1)
    assert await dialogue.get_clients("alice") == [tab2.hello["client_id"]]


async def test_is_in_room_follows_joins_and_leaves(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    assert not await dialogue.is_in_room("alice", "chat")
    await alice.request("join", room="chat")
    assert await dialogue.is_in_room("alice", "chat")
    assert not await dialogue.is_in_room("alice", "other")
    assert not await dialogue.is_in_room("bob", "chat")
    await alice.request("leave", room="chat")
    assert not await dialogue.is_in_room("alice", "chat")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_connection_and_membership_hooks(serve, probe, kind):
    calls = Calls()
    build = calls.sync if kind == "sync" else calls.async_
    hooks = Hooks(on_connected=build("connected"), on_disconnected=build("disconnected"),
                  on_joined=build("joined"), on_left=build("left"))
    dialogue = make_dialogue(hooks)
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    client_id = alice.hello["client_id"]
    [(identity, connected_id)] = await calls.wait_for("connected")
    assert isinstance(identity, Identity) and identity.user_id == "alice"
    assert connected_id == client_id
    await alice.request("join", room="chat")
    await alice.request("join", room="other")
    assert [(i.user_id, room) for i, room in await calls.wait_for("joined", 2)] == [
        ("alice", "chat"), ("alice", "other")]
    await alice.request("leave", room="chat")
    assert [(i.user_id, room) for i, room in await calls.wait_for("left")] == [("alice", "chat")]
    assert calls.named("disconnected") == []
    await alice.close()
    [(gone, gone_id)] = await calls.wait_for("disconnected")
    assert gone.user_id == "alice" and gone_id == client_id
    # rooms still joined at disconnect are left, with the hook
    assert [room for _, room in await calls.wait_for("left", 2)] == ["chat", "other"]
    order = [name for name, _ in calls.calls]
    assert order.index("connected") < order.index("joined")
    assert order[-1] == "disconnected"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_before_each_transforms_the_delivered_message(serve, probe, kind):
    def shout(msg: EventMessage, identity: Identity | None) -> EventMessage:
        if msg.event == "message":
            msg.data = {"text": msg.data["text"].upper()}
        return msg

    async def shout_async(msg: EventMessage, identity: Identity | None) -> EventMessage:
        await asyncio.sleep(0)
        return dataclasses.replace(msg, meta={**msg.meta, "by": identity.user_id if identity else None},
                                   data={"text": msg.data["text"].upper()})

    hook = shout if kind == "sync" else shout_async
    dialogue = make_dialogue(Hooks(before_each=hook))
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice.request("join", room="chat", subscriptions=[])
    await bob.request("join", room="chat")
    await alice.request("publish", room="chat", event="message", data={"text": "quiet"})
    delivered = await bob.next("event", 2)
    assert delivered["data"] == {"text": "QUIET"}
    if kind == "async":
        assert delivered["meta"] == {"by": "alice"}
    history = await bob.request("history", room="chat")
    assert [e["data"] for e in history["events"]] == [{"text": "QUIET"}]


@pytest.mark.parametrize("kind", ["sync", "async", "false"])
async def test_before_each_reject_blocks_with_the_reason(serve, probe, kind):
    after = Calls()

    def guard(msg: EventMessage, identity: Identity | None) -> EventMessage | bool:
        if "spam" in str(msg.data):
            if kind == "false":
                return False
            raise Reject("no spam please")
        return msg

    async def guard_async(msg: EventMessage, identity: Identity | None) -> EventMessage:
        await asyncio.sleep(0)
        return guard(msg, identity)

    hooks = Hooks(before_each=guard_async if kind == "async" else guard,
                  after_each=after.sync("after"))
    dialogue = make_dialogue(hooks)
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice.request("join", room="chat")
    await bob.request("join", room="chat")
    blocked = await alice.reply("publish", room="chat", event="message", data={"text": "spam!"})
    assert blocked["ok"] is False
    assert blocked["error"]["code"] == "BLOCKED"
    if kind != "false":
        assert blocked["error"]["reason"] == "no spam please"
    with pytest.raises(DialogueError) as server_blocked:
        await dialogue.trigger("chat", "message", {"text": "spam"})
    assert server_blocked.value.code == "BLOCKED"
    assert await bob.nothing("event", 0.1)
    assert after.named("after") == []
    ok = await alice.request("publish", room="chat", event="message", data={"text": "fine"})
    assert ok["seq"] == 1  # blocked events took no seq
    assert (await bob.next("event", 2))["data"] == {"text": "fine"}


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_after_each_gets_the_recipient_count(serve, probe, kind):
    calls = Calls()
    build = calls.sync if kind == "sync" else calls.async_
    dialogue = make_dialogue(Hooks(after_each=build("after")))
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    carol = await probe(ws_as(srv, "carol"))
    await probe(ws_as(srv, "dave"))  # connected, in no room
    await alice.request("join", room="chat")  # "*": hears its own events too
    await bob.request("join", room="chat")
    await carol.request("join", room="chat", subscriptions=["typing"])
    await alice.request("publish", room="chat", event="message", data={"text": "hi"})
    await dialogue.trigger("chat", "typing", {})
    await dialogue.trigger("other", "x", {})  # nobody there
    got = await calls.wait_for("after", 3)
    assert [(m.event, m.seq, n) for m, n in got] == [
        ("message", 1, 2), ("typing", 2, 3), ("x", 1, 0)]
    assert isinstance(got[0][0], EventMessage) and got[0][0].from_ == "alice"


async def test_publish_ack_errors_carry_codes(serve, probe):
    """A sanity check of the probe contract used above: ProbeError has .code."""
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("join", room="chat")
    with pytest.raises(ProbeError) as invalid:
        await alice.request("publish", room="chat", event="message", data={"text": ""})
    assert invalid.value.code == "VALIDATION_FAILED"
    assert invalid.value.error["details"][0]["loc"] == ["text"]
