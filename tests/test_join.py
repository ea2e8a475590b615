"""Joining and leaving: the join reply, max_size, before_join, membership, presence."""

from __future__ import annotations

import asyncio

import pytest
from helpers import Calls, authenticate, ws_as
from pydantic import BaseModel

from dialogue_fastapi import Dialogue, Hooks, Reject, RoomConfig, define_event
from dialogue_fastapi.testing import ProbeError


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=10)
typing = define_event("typing")


def make_dialogue(*, hooks: Hooks | None = None, **rooms: RoomConfig) -> Dialogue:
    declared = {"chat": RoomConfig(name="Chat", events=[message, typing]), **rooms}
    return Dialogue(rooms=declared, authenticate=authenticate, hooks=hooks or Hooks())


async def test_join_result_shape(serve, probe):
    room = RoomConfig(name="Shaped", description="d", events=[message, typing],
                      default_subscriptions=["message"], max_size=10)
    dialogue = make_dialogue(shaped=room)
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    result = await alice.request("join", room="shaped")
    assert set(result) == {"room", "subscriptions", "position", "events"}
    assert result["room"] == {
        "id": "shaped", "name": "Shaped", "description": "d", "max_size": 10, "size": 1,
        "events": ["message", "typing"], "default_subscriptions": ["message"],
        "channels": ["websocket", "sse"], "created_by": None,
    }
    assert result["subscriptions"] == ["message"]
    assert result["events"] == []
    position = result["position"]
    assert set(position) == {"seq", "epoch"}
    assert position["seq"] == 0 and isinstance(position["epoch"], str) and position["epoch"]
    await alice.request("publish", room="shaped", event="message", data={"text": "one"})
    bob = await probe(ws_as(srv, "bob"))
    second = await bob.request("join", room="shaped", subscriptions="*")
    assert second["position"] == {"seq": 1, "epoch": position["epoch"]}
    assert second["room"]["size"] == 2 and second["subscriptions"] == "*"


async def test_room_full_refusal_has_no_side_effects(serve, probe):
    calls = Calls()
    room = RoomConfig(name="Small", max_size=2, sync_history_on_join=10)
    hooks = Hooks(on_joined=calls.sync("joined"), before_join=calls.sync("before_join"))
    dialogue = make_dialogue(small=room, hooks=hooks)
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    carol = await probe(ws_as(srv, "carol"))
    await alice.request("join", room="small")
    await alice.request("publish", room="small", event="note", data=1)
    assert [e["seq"] for e in (await bob.request("join", room="small"))["events"]] == [1]
    with pytest.raises(ProbeError) as full:
        await carol.request("join", room="small")
    assert full.value.code == "ROOM_FULL"
    assert "small" in full.value.message
    assert [args[1] for args in calls.named("joined")] == ["small", "small"]
    # a full room refuses before asking before_join
    assert [args[0].user_id for args in calls.named("before_join")] == ["alice", "bob"]
    assert await carol.nothing("event", 0.1)  # no history was sent to the refused joiner
    assert len(await dialogue.presence("small")) == 2
    rooms = {r["id"]: r for r in (await carol.request("rooms"))["rooms"]}
    assert rooms["small"]["size"] == 2
    assert not await dialogue.is_in_room("carol", "small")
    with pytest.raises(ProbeError) as outside:
        await carol.request("publish", room="small", event="note", data=2)
    assert outside.value.code == "NOT_IN_ROOM"
    # a place frees up: the refused client can now join
    await bob.request("leave", room="small")
    joined = await carol.request("join", room="small")
    assert joined["room"]["size"] == 2


async def test_max_size_counts_every_connection_of_a_user(serve, probe):
    dialogue = make_dialogue(pair=RoomConfig(name="Pair", max_size=2))
    srv = await serve(dialogue)
    tab1 = await probe(ws_as(srv, "alice"))
    tab2 = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await tab1.request("join", room="pair")
    assert (await tab2.request("join", room="pair"))["room"]["size"] == 2
    with pytest.raises(ProbeError) as full:
        await bob.request("join", room="pair")
    assert full.value.code == "ROOM_FULL"


async def test_max_size_holds_for_concurrent_joins(serve, probe):
    async def slow_before_join(identity, room_id):
        await asyncio.sleep(0.05)  # both joins pass the size pre-check first
        return True

    dialogue = make_dialogue(solo=RoomConfig(name="Solo", max_size=1),
                             hooks=Hooks(before_join=slow_before_join))
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    replies = await asyncio.gather(alice.reply("join", room="solo"), bob.reply("join", room="solo"))
    assert sorted(r["ok"] for r in replies) == [False, True]
    assert [r["error"]["code"] for r in replies if not r["ok"]] == ["ROOM_FULL"]
    assert len(await dialogue.presence("solo")) == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_before_join_reject_is_join_denied_with_reason(serve, probe, kind):
    seen = []

    def decide(identity, room_id):
        seen.append((identity.user_id, room_id))
        if identity.user_id != "alice":
            raise Reject("members only")
        return True

    async def decide_async(identity, room_id):
        await asyncio.sleep(0)
        return decide(identity, room_id)

    calls = Calls()
    hooks = Hooks(before_join=decide if kind == "sync" else decide_async,
                  on_joined=calls.sync("joined"))
    dialogue = make_dialogue(hooks=hooks)
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice.request("join", room="chat")
    denied = await bob.reply("join", room="chat")
    assert denied["ok"] is False
    assert denied["error"]["code"] == "JOIN_DENIED"
    assert denied["error"]["message"] == "members only"
    assert denied["error"]["reason"] == "members only"
    assert seen == [("alice", "chat"), ("bob", "chat")]
    assert [args[0].user_id for args in calls.named("joined")] == ["alice"]
    assert [m.user_id for m in await dialogue.presence("chat")] == ["alice"]


async def test_before_join_reject_with_a_code_uses_that_code(serve, probe):
    def decide(identity, room_id):
        raise Reject("staff only", code="FORBIDDEN")

    dialogue = make_dialogue(hooks=Hooks(before_join=decide))
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    denied = await alice.reply("join", room="chat")
    assert denied["error"]["code"] == "FORBIDDEN"
    assert denied["error"]["message"] == "staff only"
    assert await dialogue.presence("chat") == []


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_before_join_returning_false_is_join_denied(serve, probe, kind):
    calls = Calls()
    build = calls.sync if kind == "sync" else calls.async_
    dialogue = make_dialogue(hooks=Hooks(before_join=build("before_join", False)))
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    with pytest.raises(ProbeError) as denied:
        await alice.request("join", room="chat")
    assert denied.value.code == "JOIN_DENIED"
    assert len(calls.named("before_join")) == 1
    assert await dialogue.presence("chat") == []


async def test_publish_requires_membership(serve, probe):
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    with pytest.raises(ProbeError) as outside:
        await alice.request("publish", room="chat", event="message", data={"text": "hi"})
    assert outside.value.code == "NOT_IN_ROOM"
    await alice.request("join", room="chat")
    ack = await alice.request("publish", room="chat", event="message", data={"text": "hi"})
    assert ack["seq"] == 1  # the refused publish took no seq


async def test_history_requires_membership(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await dialogue.trigger("chat", message, {"text": "secret"})
    alice = await probe(ws_as(srv, "alice"))
    with pytest.raises(ProbeError) as outside:
        await alice.request("history", room="chat")
    assert outside.value.code == "NOT_IN_ROOM"
    await alice.request("join", room="chat")
    page = await alice.request("history", room="chat")
    assert [e["data"] for e in page["events"]] == [{"text": "secret"}]


async def test_leave_then_publish_is_not_in_room(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("join", room="chat")
    assert await alice.request("leave", room="chat") == {}
    with pytest.raises(ProbeError) as outside:
        await alice.request("publish", room="chat", event="message", data={"text": "hi"})
    assert outside.value.code == "NOT_IN_ROOM"
    with pytest.raises(ProbeError) as twice:
        await alice.request("leave", room="chat")
    assert twice.value.code == "NOT_IN_ROOM"
    await dialogue.trigger("chat", message, {"text": "after"})
    assert await alice.nothing("event", 0.1)
    assert not await dialogue.is_in_room("alice", "chat")


async def test_presence_lists_users_with_client_ids(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice.request("join", room="chat")
    await bob.request("join", room="chat")
    presence = await bob.request("presence", room="chat")
    assert presence["count"] == 2
    expected = [{"user_id": "alice", "client_id": alice.hello["client_id"]},
                {"user_id": "bob", "client_id": bob.hello["client_id"]}]
    assert sorted(presence["users"], key=lambda u: u["user_id"]) == expected
    await alice.request("leave", room="chat")
    after = await bob.request("presence", room="chat")
    assert after == {"count": 1, "users": [expected[1]]}


async def test_presence_events_reach_other_members(serve, probe):
    dialogue = make_dialogue(live=RoomConfig(name="Live", presence_events=True))
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    carol = await probe(ws_as(srv, "carol"))
    await alice.request("join", room="live")
    await bob.request("join", room="live")
    joined = await alice.next("presence_join", timeout=2)
    assert joined == {"op": "presence_join", "room": "live", "user_id": "bob",
                      "client_id": bob.hello["client_id"]}
    await bob.request("leave", room="live")
    left = await alice.next("presence_leave", timeout=2)
    assert left == {"op": "presence_leave", "room": "live", "user_id": "bob",
                    "client_id": bob.hello["client_id"]}
    await carol.request("join", room="live")
    assert (await alice.next("presence_join", timeout=2))["user_id"] == "carol"
    await carol.close()  # a disconnect leaves too
    gone = await alice.next("presence_leave", timeout=2)
    assert gone["user_id"] == "carol" and gone["client_id"] == carol.hello["client_id"]
    # nobody hears about their own join or leave, nor do non-members
    assert await bob.nothing("presence_join", 0.05)
    assert await alice.nothing("presence_join", 0.05)


async def test_no_presence_events_by_default(serve, probe):
    srv = await serve(make_dialogue())
    alice = await probe(ws_as(srv, "alice"))
    bob = await probe(ws_as(srv, "bob"))
    await alice.request("join", room="chat")
    await bob.request("join", room="chat")
    await bob.request("leave", room="chat")
    assert await alice.nothing("presence_join", 0.1)
    assert await alice.nothing("presence_leave", 0.05)


async def test_sse_only_room_refuses_websocket_join(serve, probe):
    dialogue = make_dialogue(feed=RoomConfig(name="Feed", channels=["sse"]))
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    with pytest.raises(ProbeError) as refused:
        await alice.request("join", room="feed")
    assert refused.value.code == "FORBIDDEN"
    assert await dialogue.presence("feed") == []
    with pytest.raises(ProbeError) as publish:
        await alice.request("publish", room="feed", event="x", data=1)
    assert publish.value.code in {"FORBIDDEN", "NOT_IN_ROOM"}
