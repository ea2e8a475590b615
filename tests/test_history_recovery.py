"""Hot history, history paging, recovery with ``since``, ordering, idempotent publish."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from helpers import authenticate, ws_as
from websockets.asyncio.client import connect

from dialogue_fastapi import Dialogue, Position, RoomConfig, define_event
from dialogue_fastapi.brokers import MemoryBroker
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.testing import ProbeError, WsProbe

message = define_event("message", history=100)
short = define_event("short", history=3)
typing = define_event("typing")  # no history: live only
note = define_event("note", history=10)
EVENTS = [message, short, typing, note]


def make_dialogue(**settings: object) -> Dialogue:
    rooms = {
        "chat": RoomConfig(name="Chat", events=EVENTS),
        "synced": RoomConfig(name="Synced", events=EVENTS, sync_history_on_join=3),
        "synced-all": RoomConfig(name="Synced all", events=EVENTS, sync_history_on_join=True),
    }
    return Dialogue(rooms=rooms, authenticate=authenticate, **settings)


async def trigger_many(dialogue: Dialogue, room: str, names: list[str]) -> list[int]:
    return [(await dialogue.trigger(room, name, {"n": i})).seq for i, name in enumerate(names)]


def seqs(events: list[dict[str, object]]) -> list[object]:
    return [e["seq"] for e in events]


async def joined(probe, srv, room: str = "chat", user: str = "bob", **fields: object) -> WsProbe:
    client = await probe(ws_as(srv, user))
    await client.request("join", room=room, **fields)
    return client


async def test_per_event_history_keeps_the_newest_n(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    # seq:              1        2        3        4        5        6        7
    await trigger_many(dialogue, "chat", ["short", "message", "short", "short", "note", "short",
                                          "short"])
    bob = await joined(probe, srv)
    page = await bob.request("history", room="chat")
    assert [(e["event"], e["seq"]) for e in page["events"]] == [
        ("message", 2), ("short", 4), ("note", 5), ("short", 6), ("short", 7)]
    only_short = await bob.request("history", room="chat", event="short")
    assert seqs(only_short["events"]) == [4, 6, 7]


async def test_events_without_history_are_not_in_history(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "chat", ["typing", "message", "typing", "typing"])
    bob = await joined(probe, srv)
    page = await bob.request("history", room="chat", limit=10)
    assert [(e["event"], e["seq"]) for e in page["events"]] == [("message", 2)]
    assert (await bob.request("history", room="chat", event="typing"))["events"] == []
    synced = await bob.request("join", room="synced-all")
    assert synced["events"] == []
    assert (await dialogue.history("chat", typing)) == []


async def test_per_event_history_survives_a_burst_of_other_events(serve, probe):
    dialogue = make_dialogue()  # recovery_window: the default 1000
    srv = await serve(dialogue)
    await trigger_many(dialogue, "synced", ["message"] * 3)
    await trigger_many(dialogue, "synced", ["typing"] * 1000)  # live-only, no history
    bob = await probe(ws_as(srv, "bob"))
    assert seqs((await bob.request("join", room="synced"))["events"]) == [1, 2, 3]
    assert seqs((await bob.request("history", room="synced"))["events"]) == [1, 2, 3]


async def test_sync_history_on_join_sends_the_newest_n(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "synced", ["message", "note", "typing", "message", "note",
                                            "message"])
    bob = await probe(ws_as(srv, "bob"))
    result = await bob.request("join", room="synced")
    assert seqs(result["events"]) == [4, 5, 6]
    assert [e["data"] for e in result["events"]] == [{"n": 3}, {"n": 4}, {"n": 5}]
    assert result["position"]["seq"] == 6
    # the join's own history field wins over the room's default
    carol = await probe(ws_as(srv, "carol"))
    assert seqs((await carol.request("join", room="synced", history=1))["events"]) == [6]
    plain = await probe(ws_as(srv, "dave"))
    await dialogue.trigger("chat", "message", {})
    assert (await plain.request("join", room="chat"))["events"] == []  # off by default


async def test_sync_history_on_join_true_sends_fifty(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "synced-all", ["message"] * 60)
    bob = await probe(ws_as(srv, "bob"))
    result = await bob.request("join", room="synced-all")
    assert seqs(result["events"]) == list(range(11, 61))


async def test_history_limit_alone_is_the_newest_n(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "chat", ["message"] * 10)
    bob = await joined(probe, srv)
    page = await bob.request("history", room="chat", limit=3)
    assert seqs(page["events"]) == [8, 9, 10]
    assert page["position"]["seq"] == 10
    assert page["position"]["epoch"] == (await dialogue.position("chat")).epoch
    assert seqs((await bob.request("history", room="chat"))["events"]) == list(range(1, 11))
    await trigger_many(dialogue, "chat", ["message"] * 50)
    assert seqs((await bob.request("history", room="chat"))["events"]) == list(range(11, 61))


async def test_history_after_pages_forward_without_holes(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "chat", ["message"] * 10)
    bob = await joined(probe, srv)
    pages, cursor = [], 0
    while True:
        page = seqs((await bob.request("history", room="chat", after=cursor, limit=3))["events"])
        if not page:
            break
        pages.append(page)
        cursor = page[-1]
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]


async def test_history_before_pages_backward(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "chat", ["message"] * 8)
    bob = await joined(probe, srv)
    pages, cursor = [], 9
    while True:
        page = seqs((await bob.request("history", room="chat", before=cursor, limit=3))["events"])
        if not page:
            break
        pages.append(page)
        cursor = page[0]
    assert pages == [[6, 7, 8], [3, 4, 5], [1, 2]]


async def test_history_event_filter_pages(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    # seq: 1..8 -> notes at 2, 4, 6, 8
    await trigger_many(dialogue, "chat", ["message", "note"] * 4)
    bob = await joined(probe, srv)
    page = await bob.request("history", room="chat", event="note")
    assert {e["event"] for e in page["events"]} == {"note"}
    assert seqs(page["events"]) == [2, 4, 6, 8]
    assert seqs((await bob.request("history", room="chat", event="note", limit=2))["events"]) == [6, 8]
    forward = await bob.request("history", room="chat", event="note", after=2, limit=2)
    assert seqs(forward["events"]) == [4, 6]
    backward = await bob.request("history", room="chat", event="message", before=7, limit=2)
    assert seqs(backward["events"]) == [3, 5]
    by_definition = await dialogue.history("chat", note, limit=2)
    assert [m.seq for m in by_definition] == [6, 8]


@pytest.mark.parametrize("limit", [0, 1001])
async def test_history_limit_out_of_range_is_bad_request(serve, probe, limit):
    srv = await serve(make_dialogue())
    bob = await joined(probe, srv)
    with pytest.raises(ProbeError) as refused:
        await bob.request("history", room="chat", limit=limit)
    assert refused.value.code == "BAD_REQUEST"


async def test_join_since_recovers_exactly_the_missed_events(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    bob = await probe(ws_as(srv, "bob"))
    first = await bob.request("join", room="chat")
    await trigger_many(dialogue, "chat", ["message", "typing"])
    assert seqs(await bob.events(2)) == [1, 2]
    await bob.close()
    await trigger_many(dialogue, "chat", ["typing", "message", "note"])  # missed: 3, 4, 5
    again = await probe(ws_as(srv, "bob"))
    since = {"seq": 2, "epoch": first["position"]["epoch"]}
    result = await again.request("join", room="chat", since=since)
    assert result["recovered"] is True
    assert [(e["event"], e["seq"]) for e in result["events"]] == [
        ("typing", 3), ("message", 4), ("note", 5)]
    assert result["position"] == {"seq": 5, "epoch": since["epoch"]}
    await dialogue.trigger("chat", "message", {"live": True})
    live = await again.next("event", 2)
    assert live["seq"] == 6 and live["data"] == {"live": True}
    assert await again.nothing("event", 0.1)


async def test_join_since_the_current_position_recovers_nothing(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "chat", ["message"] * 3)
    position = await dialogue.position("chat")
    bob = await probe(ws_as(srv, "bob"))
    result = await bob.request("join", room="chat", since=position.to_dict())
    assert result["recovered"] is True and result["events"] == []
    await dialogue.trigger("chat", "message", {})
    assert (await bob.next("event", 2))["seq"] == 4


async def test_join_since_with_a_wrong_epoch_is_not_recovered(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "chat", ["message"] * 4)
    current = await dialogue.position("chat")
    bob = await probe(ws_as(srv, "bob"))
    result = await bob.request("join", room="chat", since={"seq": 2, "epoch": "not-the-epoch"})
    assert result["recovered"] is False
    assert result["events"] == []
    assert result["position"] == {"seq": 4, "epoch": current.epoch}
    await dialogue.trigger("chat", "message", {})
    assert (await bob.next("event", 2))["seq"] == 5


async def test_join_since_a_future_seq_is_not_recovered(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    await trigger_many(dialogue, "chat", ["message"] * 2)
    epoch = (await dialogue.position("chat")).epoch
    bob = await probe(ws_as(srv, "bob"))
    result = await bob.request("join", room="chat", since={"seq": 99, "epoch": epoch})
    assert result["recovered"] is False and result["events"] == []
    assert result["position"] == {"seq": 2, "epoch": epoch}


async def test_join_since_beyond_the_recovery_window_is_never_partial(serve, probe):
    dialogue = make_dialogue(recovery_window=5)
    srv = await serve(dialogue)
    await trigger_many(dialogue, "chat", ["message"] * 10)  # the window holds 6..10
    epoch = (await dialogue.position("chat")).epoch
    for since_seq in (0, 2, 4):
        client = await probe(ws_as(srv, f"old{since_seq}"))
        result = await client.request("join", room="chat", since={"seq": since_seq, "epoch": epoch})
        assert result["recovered"] is False, since_seq
        assert result["events"] == [], since_seq
        assert result["position"] == {"seq": 10, "epoch": epoch}
    edge = await probe(ws_as(srv, "edge"))
    result = await edge.request("join", room="chat", since={"seq": 5, "epoch": epoch})
    assert result["recovered"] is True
    assert seqs(result["events"]) == [6, 7, 8, 9, 10]


class LaggyBroker(MemoryBroker):
    """A memory broker whose answers arrive late, like a networked broker's.

    The room moves on while a join waits for its position and replay, so live
    events really do reach the joiner's buffer during the join.
    """

    async def position(self, room: str) -> Position:
        found = await super().position(room)
        await asyncio.sleep(0.003)
        return found

    async def read(self, room: str, after: int, *, partial: bool = False) -> list[EventMessage] | None:
        found = await super().read(room, after, partial=partial)
        await asyncio.sleep(0.003)
        return found


@pytest.mark.parametrize("broker", ["memory", "laggy"])
async def test_join_since_mid_stream_has_no_gap_no_duplicate(serve, broker):
    """While the server publishes, a joiner with ``since`` sees every seq exactly once."""
    dialogue = make_dialogue(broker=LaggyBroker() if broker == "laggy" else "memory://")
    srv = await serve(dialogue)
    start = await dialogue.position("chat")
    total, join_after = 300, 100
    reached = asyncio.Event()

    async def produce() -> None:
        for i in range(total):
            sent = await dialogue.trigger("chat", "typing", {"i": i})
            if sent.seq == join_after:
                reached.set()
            await asyncio.sleep(0.001 if i % 2 else 0)

    async with connect(ws_as(srv, "bob"), compression=None, max_size=None) as ws:
        assert orjson.loads(await ws.recv())["op"] == "hello"
        producer = asyncio.create_task(produce())
        try:
            await asyncio.wait_for(reached.wait(), 5)
            await ws.send(orjson.dumps({"op": "join", "id": 1, "room": "chat",
                                        "since": start.to_dict()}).decode())
            reply, replayed, live = None, [], []
            async with asyncio.timeout(5):
                while not (reply is not None and (replayed + live)[-1:] == [total]):
                    frame = orjson.loads(await ws.recv())
                    if frame.get("id") == 1:
                        assert frame["ok"] is True, frame
                        reply = frame["result"]
                        replayed = seqs(reply["events"])
                    else:
                        assert frame["op"] == "event"
                        assert reply is not None, "a live event arrived before the join reply"
                        live.append(frame["seq"])
            await producer
        finally:
            producer.cancel()
    assert reply["recovered"] is True
    assert join_after <= reply["position"]["seq"] < total, "the join was not mid-stream"
    assert replayed and live
    assert replayed[-1] == reply["position"]["seq"]
    assert replayed + live == list(range(start.seq + 1, start.seq + total + 1))


async def test_idempotency_key_delivers_once(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await joined(probe, srv, user="alice", subscriptions=[])
    bob = await joined(probe, srv)
    first = await alice.request("publish", room="chat", event="message", data={"t": 1},
                                idempotency_key="k-1")
    second = await alice.request("publish", room="chat", event="message", data={"t": 1},
                                 idempotency_key="k-1")
    assert first["seq"] == second["seq"] == 1
    assert not first.get("duplicate")
    assert second["duplicate"] is True
    other = await alice.request("publish", room="chat", event="message", data={"t": 2},
                                idempotency_key="k-2")
    assert other["seq"] == 2 and not other.get("duplicate")
    assert seqs(await bob.events(2)) == [1, 2]
    assert await bob.nothing("event", 0.15)
    assert seqs((await bob.request("history", room="chat"))["events"]) == [1, 2]
    # keys belong to their sender: the server's "k-1" is its own, and its retry dedupes
    server_first = await dialogue.trigger("chat", "message", {"t": 3}, idempotency_key="k-1")
    assert server_first.seq == 3
    retried = await dialogue.trigger("chat", "message", {"t": 3}, idempotency_key="k-1")
    assert retried.seq == 3
    assert seqs(await bob.events(1)) == [3]
    assert await bob.nothing("event", 0.1)


async def test_idempotency_keys_of_different_senders_do_not_collide(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue)
    alice = await joined(probe, srv, user="alice", subscriptions=[])
    bob = await joined(probe, srv, user="bob", subscriptions=[])
    carol = await joined(probe, srv, user="carol")
    first = await alice.request("publish", room="chat", event="message", data={"by": "alice"},
                                idempotency_key="1")
    second = await bob.request("publish", room="chat", event="message", data={"by": "bob"},
                               idempotency_key="1")
    assert not second.get("duplicate")
    assert (first["seq"], second["seq"]) == (1, 2)
    assert [e["data"]["by"] for e in await carol.events(2, timeout=1)] == ["alice", "bob"]


async def test_rest_history_route(serve, probe):
    dialogue = make_dialogue()
    srv = await serve(dialogue, prefix="/dialogue")
    await trigger_many(dialogue, "chat", ["message", "typing", "message", "note", "message"])
    async with httpx.AsyncClient(base_url=srv.http_url + "/dialogue") as http:
        newest = await http.get("/rooms/chat/history", params={"token": "alice", "limit": 2})
        assert newest.status_code == 200
        body = newest.json()
        assert seqs(body["events"]) == [4, 5]
        assert body["position"] == (await dialogue.position("chat")).to_dict()
        forward = await http.get("/rooms/chat/history",
                                 params={"token": "alice", "after": 1, "limit": 2})
        assert seqs(forward.json()["events"]) == [3, 4]
        notes = await http.get("/rooms/chat/history", params={"token": "alice", "event": "note"})
        assert seqs(notes.json()["events"]) == [4]
        missing = await http.get("/rooms/nowhere/history", params={"token": "alice"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "ROOM_NOT_FOUND"
