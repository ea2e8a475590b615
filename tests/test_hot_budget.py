"""The node-wide budget of hot events (memory broker): the least recently active rooms lose
their oldest events first; recovery past them comes from the store, or is refused."""

from __future__ import annotations

from helpers import authenticate, ws_as

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.brokers import MemoryBroker
from dialogue_fastapi.core.types import EventMessage, PresenceEntry


def event(room: str, n: int) -> EventMessage:
    return EventMessage(room=room, event="e", data={"n": n, "pad": "x" * 100}, from_="u")


async def test_the_least_recently_active_room_loses_its_oldest_events_first():
    broker = MemoryBroker(hot_bytes=6_000)
    for room in ("a", "b"):
        for n in range(10):
            await broker.publish(event(room, n), window=100)
    assert broker.held_bytes <= 6_000 and (await broker.read("a", 0)) is not None
    for n in range(10):
        await broker.publish(event("c", n), window=100)
    assert broker.held_bytes <= 6_000
    assert await broker.read("a", 0) is None  # "a" was the least recently active
    kept_a = await broker.read("a", 0, partial=True) or []
    kept_b = await broker.read("b", 0, partial=True) or []
    kept_c = await broker.read("c", 0, partial=True) or []
    assert len(kept_a) < 10 and len(kept_b) == 10 and len(kept_c) == 10
    assert [m.seq for m in kept_a] == list(range(11 - len(kept_a), 11))  # the newest stay
    assert kept_c[-1].data == {"n": 9, "pad": "x" * 100}
    assert (await broker.position("a")).seq == 10  # positions are never dropped


async def test_an_idempotency_key_goes_with_its_event():
    broker = MemoryBroker(hot_bytes=1_000)
    first = await broker.publish(EventMessage("a", "e", {"n": 1}, "u", idempotency_key="k"), 100)
    again = await broker.publish(EventMessage("a", "e", {"n": 2}, "u", idempotency_key="k"), 100)
    assert again.duplicate and again.message.seq == first.message.seq == 1
    for n in range(20):
        await broker.publish(event("b", n), window=100)
    assert await broker.read("a", 0, partial=True) == []
    later = await broker.publish(EventMessage("a", "e", {"n": 3}, "u", idempotency_key="k"), 100)
    assert not later.duplicate and later.message.seq == 2  # its first use left the node


async def test_a_room_with_members_is_not_evicted():
    broker = MemoryBroker()
    await broker.publish(event("a", 1), window=10)
    await broker.presence.join("a", PresenceEntry("u", "c1"), None)
    assert not broker.evict("a")
    await broker.presence.leave("a", "c1")
    held = broker.held_bytes
    assert held > 0 and broker.evict("a") and broker.held_bytes == 0


def budget_dialogue(**settings: object) -> Dialogue:
    return Dialogue(rooms={"a": RoomConfig(name="A"), "b": RoomConfig(name="B")},
                    authenticate=authenticate, hot_history_bytes=4_000, **settings)


async def fill_past_the_budget(srv: object, probe: object) -> tuple[object, dict[str, object]]:
    alice = await probe(ws_as(srv, "alice"))  # type: ignore[operator]
    joined = await alice.request("join", room="a")
    for n in range(5):
        await alice.request("publish", room="a", event="note", data={"n": n})
    await alice.request("leave", room="a")
    await alice.request("join", room="b")
    for n in range(40):  # "b" pushes the node over its budget: "a" is trimmed first
        await alice.request("publish", room="b", event="note", data={"n": n, "pad": "y" * 100})
    return alice, {"seq": 0, "epoch": joined["position"]["epoch"]}


async def test_recovery_past_the_budget_is_refused_without_a_store(serve, probe):
    srv = await serve(budget_dialogue())
    alice, since = await fill_past_the_budget(srv, probe)
    back = await alice.request("join", room="a", since={**since, "seq": 1})  # type: ignore[attr-defined]
    assert back["recovered"] is False


async def test_recovery_past_the_budget_is_served_from_the_store(tmp_path, serve, probe):
    srv = await serve(budget_dialogue(persistence=f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"))
    alice, since = await fill_past_the_budget(srv, probe)
    back = await alice.request("join", room="a", since={**since, "seq": 1})  # type: ignore[attr-defined]
    assert back["recovered"] is True
    assert [e["data"]["n"] for e in back["events"]] == [1, 2, 3, 4]
