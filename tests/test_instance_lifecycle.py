"""Room-family instances over time: held from first use, bounded, evicted when idle, and
continued from the store (or in a new epoch without one) when used again."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from helpers import authenticate, ws_as
from net_helpers import bearer, wait_until
from pydantic import BaseModel
from redis_helpers import REDIS_URL, delete_prefix, need_redis

from dialogue_fastapi import Dialogue, RateLimit, RoomConfig, define_event
from dialogue_fastapi.testing import ProbeError


class Text(BaseModel):
    text: str


message = define_event("message", Text, history=10)


def make_dialogue(idle_ttl: float | None = 0.15, **settings: Any) -> Dialogue:
    return Dialogue(rooms={
        "lobby": RoomConfig(name="Lobby"),
        "dm:{a}:{b}": RoomConfig(name="Direct messages", events=[message], members=["a", "b"],
                                 idle_ttl=idle_ttl),
        "doc:{doc_id:int}": RoomConfig(name="Document", events=[message], idle_ttl=idle_ttl),
    }, authenticate=authenticate, **settings)


async def refused(probe: Any, op: str, **fields: Any) -> dict[str, Any]:
    with pytest.raises(ProbeError) as caught:
        await probe.request(op, **fields)
    return caught.value.error


async def three_messages_then_leave(probe: Any, srv: Any) -> tuple[Any, dict[str, Any]]:
    """alice says m0..m2 in dm:alice:bob and leaves; returns her probe and her position."""
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("join", room="dm:alice:bob")
    for n in range(3):
        await alice.request("publish", room="dm:alice:bob", event="message", data={"text": f"m{n}"})
    left_at = (await alice.request("join", room="dm:alice:bob"))["position"]
    await alice.request("leave", room="dm:alice:bob")
    return alice, left_at


def held(dialogue: Dialogue) -> int:
    return len(dialogue.runtime.instances)


async def test_an_idle_instance_is_evicted_and_frees_its_place(serve, probe):
    dialogue = make_dialogue(max_instances=1)
    srv = await serve(dialogue)
    alice = await probe(ws_as(srv, "alice"))
    await alice.request("join", room="dm:alice:bob")
    await alice.request("join", room="lobby")  # plain rooms do not count
    full = await refused(alice, "join", room="dm:alice:carol")
    assert full["code"] == "UNAVAILABLE" and "max_instances" in full["message"]
    await alice.request("leave", room="dm:alice:bob")
    assert held(dialogue) == 1  # idle, not yet gone: a quick return keeps its place
    await wait_until(lambda: held(dialogue) == 0, timeout=5)
    assert dialogue.runtime.instances.evicted == 1
    await alice.request("join", room="dm:alice:carol")


async def test_an_instance_with_members_is_never_evicted(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice, bob = await probe(ws_as(srv, "alice")), await probe(ws_as(srv, "bob"))
    await alice.request("join", room="dm:alice:bob")
    await bob.request("join", room="doc:7")
    await bob.request("leave", room="doc:7")
    await wait_until(lambda: dialogue.runtime.instances.evicted == 1, timeout=5)
    assert held(dialogue) == 1 and "dm:alice:bob" in dialogue.runtime.instances
    await alice.request("publish", room="dm:alice:bob", event="message", data={"text": "still here"})


async def test_a_refused_join_holds_nothing(serve, probe):
    dialogue = make_dialogue(idle_ttl=None)
    srv = await serve(dialogue)
    carol = await probe(ws_as(srv, "carol"))
    assert (await refused(carol, "join", room="dm:alice:bob"))["code"] == "FORBIDDEN"
    async with httpx.AsyncClient(base_url=srv.http_url) as client:
        answer = await client.get("/rooms/dm:alice:bob/history", headers=bearer("carol"))
    assert answer.status_code == 403
    assert held(dialogue) == 0


async def test_new_instances_are_rate_limited_per_user(serve, probe):
    dialogue = make_dialogue(idle_ttl=None, rate_limit=RateLimit(instances="3/minute"))
    srv = await serve(dialogue)
    alice, bob = await probe(ws_as(srv, "alice")), await probe(ws_as(srv, "bob"))
    for n in range(3):
        await alice.request("join", room=f"doc:{n}")
    over = await refused(alice, "join", room="doc:3")
    assert over["code"] == "RATE_LIMITED" and "new room-family instances" in over["message"]
    await bob.request("join", room="doc:1")  # a live instance is not a new one
    async with httpx.AsyncClient(base_url=srv.http_url) as client:  # the same budget on REST
        answer = await client.get("/rooms/doc:4/history", headers=bearer("alice"))
        assert answer.status_code == 429 and answer.json()["error"]["code"] == "RATE_LIMITED"
        assert (await client.get("/rooms/doc:4/history", headers=bearer("bob"))).status_code == 200
    assert held(dialogue) == 4


async def test_without_a_store_an_evicted_instance_starts_a_new_epoch(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice, left_at = await three_messages_then_leave(probe, srv)
    await wait_until(lambda: held(dialogue) == 0, timeout=5)
    back = await alice.request("join", room="dm:alice:bob", since=left_at)
    assert back["recovered"] is False and back["events"] == []
    assert back["position"]["seq"] == 0 and back["position"]["epoch"] != left_at["epoch"]


async def test_with_a_store_an_evicted_instance_continues_its_seq_and_epoch(tmp_path, serve, probe):
    dialogue = make_dialogue(persistence=f"sqlite+aiosqlite:///{tmp_path / 'dm.db'}")
    srv = await serve(dialogue)
    alice, left_at = await three_messages_then_leave(probe, srv)
    await wait_until(lambda: dialogue.runtime.instances.evicted >= 1, timeout=5)
    # the application writes into the evicted conversation; then it goes idle again
    for n in range(3, 5):
        sent = await dialogue.trigger("dm:alice:bob", "message", {"text": f"m{n}"})
        assert sent.seq == n + 1
    await wait_until(lambda: dialogue.runtime.instances.evicted >= 2, timeout=5)
    back = await alice.request("join", room="dm:alice:bob", since=left_at)
    assert back["recovered"] is True
    assert [e["data"]["text"] for e in back["events"]] == ["m3", "m4"]
    assert back["position"] == {"seq": 5, "epoch": left_at["epoch"]}
    async with httpx.AsyncClient(base_url=srv.http_url) as client:
        page = (await client.get("/rooms/dm:alice:bob/history",
                                 headers=bearer("bob"))).json()["events"]
    assert [e["seq"] for e in page] == [1, 2, 3, 4, 5]


async def test_on_redis_an_evicted_instance_continues_from_redis(serve, probe):
    await need_redis()
    prefix = f"dtest{secrets.token_hex(4)}:"
    try:
        dialogue = make_dialogue(broker=f"{REDIS_URL}?prefix={prefix}")
        srv = await serve(dialogue)
        alice = await probe(ws_as(srv, "alice"))
        joined = await alice.request("join", room="dm:alice:bob")
        for n in range(3):
            await alice.request("publish", room="dm:alice:bob", event="message",
                                data={"text": f"m{n}"})
        await alice.request("leave", room="dm:alice:bob")
        await wait_until(lambda: dialogue.runtime.instances.evicted >= 1, timeout=5)
        since = {"seq": 1, "epoch": joined["position"]["epoch"]}
        back = await alice.request("join", room="dm:alice:bob", since=since)
        assert back["recovered"] is True  # Redis kept the room's keys: nothing shared dropped
        assert [e["data"]["text"] for e in back["events"]] == ["m1", "m2"]
        assert back["position"] == {"seq": 3, "epoch": since["epoch"]}
    finally:
        await delete_prefix(prefix)
