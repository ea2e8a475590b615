"""Per-event subscriptions: at join, room defaults, subscribe and unsubscribe."""

from __future__ import annotations

import pytest
from helpers import authenticate, ws_as

from dialogue_fastapi import Dialogue, RoomConfig, define_event
from dialogue_fastapi.testing import ProbeError, WsProbe

message = define_event("message", history=20)
typing = define_event("typing", history=20)
reaction = define_event("reaction", history=20)
EVENTS = [message, typing, reaction]


def make_dialogue() -> Dialogue:
    return Dialogue(rooms={
        "chat": RoomConfig(name="Chat", events=EVENTS),
        "quiet": RoomConfig(name="Quiet", events=EVENTS, default_subscriptions=["message"]),
        "open": RoomConfig(name="Open"),  # any event name
    }, authenticate=authenticate)


async def publish_each(sender: WsProbe, room: str, names: list[str]) -> None:
    for name in names:
        await sender.request("publish", room=room, event=name, data={"kind": name})


async def received(client: WsProbe, wait: float = 0.15) -> list[str]:
    """The names of every event frame that arrives within ``wait`` seconds."""
    names = []
    while True:
        try:
            frame = await client.next("event", wait)
        except TimeoutError:
            return names
        names.append(frame["event"])
    return names


async def setup(serve, probe, room: str, **join: object) -> tuple[Dialogue, WsProbe, WsProbe, dict]:
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    sender = await probe(ws_as(srv, "alice"))
    listener = await probe(ws_as(srv, "bob"))
    await sender.request("join", room=room, subscriptions=[])
    result = await listener.request("join", room=room, **join)
    return dialogue, sender, listener, result


async def test_join_with_an_event_list_receives_only_those(serve, probe):
    _, alice, bob, result = await setup(serve, probe, "chat", subscriptions=["message"])
    assert result["subscriptions"] == ["message"]
    await publish_each(alice, "chat", ["typing", "message", "reaction", "message"])
    assert await received(bob) == ["message", "message"]


async def test_join_with_star_receives_everything(serve, probe):
    _, alice, bob, result = await setup(serve, probe, "chat", subscriptions="*")
    assert result["subscriptions"] == "*"
    await publish_each(alice, "chat", ["typing", "message", "reaction"])
    assert await received(bob) == ["typing", "message", "reaction"]


async def test_default_subscriptions_apply_when_none_are_given(serve, probe):
    _, alice, bob, result = await setup(serve, probe, "quiet")
    assert result["subscriptions"] == ["message"]
    assert result["room"]["default_subscriptions"] == ["message"]
    await publish_each(alice, "quiet", ["typing", "message", "reaction"])
    assert await received(bob) == ["message"]


async def test_no_default_subscriptions_means_every_event(serve, probe):
    _, alice, bob, result = await setup(serve, probe, "chat")
    assert result["subscriptions"] == "*"
    await publish_each(alice, "chat", ["typing", "reaction"])
    assert await received(bob) == ["typing", "reaction"]


async def test_explicit_subscriptions_override_room_defaults(serve, probe):
    _, alice, bob, result = await setup(serve, probe, "quiet", subscriptions=["typing"])
    assert result["subscriptions"] == ["typing"]
    await publish_each(alice, "quiet", ["message", "typing"])
    assert await received(bob) == ["typing"]


async def test_subscribe_adds_events(serve, probe):
    _, alice, bob, _ = await setup(serve, probe, "chat", subscriptions=["message"])
    await publish_each(alice, "chat", ["typing"])
    result = await bob.request("subscribe", room="chat", events=["typing"])
    assert result["subscriptions"] == ["message", "typing"]
    await publish_each(alice, "chat", ["typing", "reaction", "message"])
    assert await received(bob) == ["typing", "message"]


async def test_subscribe_star_adds_every_event(serve, probe):
    _, alice, bob, _ = await setup(serve, probe, "chat", subscriptions=["message"])
    result = await bob.request("subscribe", room="chat", events="*")
    assert result["subscriptions"] == "*"
    await publish_each(alice, "chat", ["typing", "reaction"])
    assert await received(bob) == ["typing", "reaction"]


async def test_unsubscribe_from_a_list(serve, probe):
    _, alice, bob, _ = await setup(serve, probe, "chat", subscriptions=["message", "typing"])
    result = await bob.request("unsubscribe", room="chat", events=["typing"])
    assert result["subscriptions"] == ["message"]
    await publish_each(alice, "chat", ["typing", "message"])
    assert await received(bob) == ["message"]


async def test_unsubscribe_from_star(serve, probe):
    _, alice, bob, _ = await setup(serve, probe, "chat", subscriptions="*")
    result = await bob.request("unsubscribe", room="chat", events=["typing"])
    assert result["subscriptions"] == "*" and "typing" in result.get("excluded", ["typing"])
    await publish_each(alice, "chat", ["typing", "reaction", "message", "typing"])
    assert await received(bob) == ["reaction", "message"]
    again = await bob.request("subscribe", room="chat", events=["typing"])
    assert again["subscriptions"] == "*" and not again.get("excluded")
    await publish_each(alice, "chat", ["typing"])
    assert await received(bob) == ["typing"]


async def test_unsubscribe_everything_receives_nothing(serve, probe):
    _, alice, bob, _ = await setup(serve, probe, "chat", subscriptions=["message"])
    assert (await bob.request("unsubscribe", room="chat", events=["message"]))["subscriptions"] == []
    await publish_each(alice, "chat", ["message", "typing", "reaction"])
    assert await received(bob, 0.2) == []


async def test_history_on_join_respects_subscriptions(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    for name in ["message", "typing", "message", "reaction"]:
        await dialogue.trigger("chat", name, {"kind": name})
    bob = await probe(ws_as(srv, "bob"))
    result = await bob.request("join", room="chat", subscriptions=["message"], history=10)
    assert [(e["event"], e["seq"]) for e in result["events"]] == [("message", 1), ("message", 3)]


async def test_recovery_respects_subscriptions(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    epoch = (await dialogue.position("chat")).epoch
    for name in ["message", "typing", "reaction", "message"]:
        await dialogue.trigger("chat", name, {"kind": name})
    bob = await probe(ws_as(srv, "bob"))
    result = await bob.request("join", room="chat", subscriptions=["message"],
                               since={"seq": 0, "epoch": epoch})
    assert result["recovered"] is True
    assert [e["seq"] for e in result["events"]] == [1, 4]
    assert result["position"]["seq"] == 4
    await dialogue.trigger("chat", "typing", {})
    await dialogue.trigger("chat", "message", {})
    assert (await bob.next("event", 2))["seq"] == 6


@pytest.mark.parametrize("op", ["join", "subscribe"])
async def test_unknown_event_names_are_event_not_allowed(serve, probe, op):
    srv = await serve(make_dialogue())
    bob = await probe(ws_as(srv, "bob"))
    if op == "subscribe":
        await bob.request("join", room="chat", subscriptions=["message"])
        with pytest.raises(ProbeError) as refused:
            await bob.request("subscribe", room="chat", events=["message", "bogus"])
        current = await bob.request("subscribe", room="chat", events=[])
        assert current["subscriptions"] == ["message"]  # unchanged by the refusal
    else:
        with pytest.raises(ProbeError) as refused:
            await bob.request("join", room="chat", subscriptions=["message", "bogus"])
        assert (await bob.request("presence", room="chat"))["count"] == 0
    assert refused.value.code == "EVENT_NOT_ALLOWED"
    assert "bogus" in refused.value.message


async def test_any_event_name_in_a_room_without_declared_events(serve, probe):
    _, alice, bob, result = await setup(serve, probe, "open", subscriptions=["anything"])
    assert result["subscriptions"] == ["anything"]
    await publish_each(alice, "open", ["other", "anything"])
    assert await received(bob) == ["anything"]


@pytest.mark.parametrize("op", ["subscribe", "unsubscribe"])
async def test_subscription_ops_require_membership(serve, probe, op):
    srv = await serve(make_dialogue())
    bob = await probe(ws_as(srv, "bob"))
    with pytest.raises(ProbeError) as refused:
        await bob.request(op, room="chat", events=["message"])
    assert refused.value.code == "NOT_IN_ROOM"
