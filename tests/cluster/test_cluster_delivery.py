"""Events across real node processes: delivery both ways, one seq order, on-handlers once.

Three uvicorn processes share the real Redis (one key prefix for this module);
clients are real WebSocket and HTTP clients of those processes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from nodes import Cluster, NodeProcess, bearer, eventually
from redis_helpers import redis_client

NODES = 3


def summary(event: dict[str, Any]) -> tuple[int, str, Any]:
    return event["seq"], event["from"], event["data"]


async def test_events_cross_nodes_both_ways_and_from_rest(cluster: Cluster) -> None:
    a, b, c = cluster.nodes
    alice = await cluster.probe(a, "alice")
    bob = await cluster.probe(b, "bob")
    await alice.request("join", room="cross")
    await bob.request("join", room="cross")

    # a client on A publishes, the client on B receives (and A's own client too)
    ack = await alice.request("publish", room="cross", event="msg", data={"text": "from A"})
    assert ack["seq"] == 1
    expected_1 = (1, "alice", {"text": "from A"})
    assert summary(await bob.next("event")) == expected_1
    assert summary(await alice.next("event")) == expected_1

    # and the other way round
    ack = await bob.request("publish", room="cross", event="msg", data={"text": "from B"})
    assert ack["seq"] == 2
    expected_2 = (2, "bob", {"text": "from B"})
    assert summary(await alice.next("event")) == expected_2
    assert summary(await bob.next("event")) == expected_2

    # a server-side publish over REST on B (no membership needed) reaches A
    response = await cluster.http.post(f"{b.api_url}/rooms/cross/events", headers=bearer("carol"),
                                       json={"event": "msg", "data": {"text": "REST on B"}})
    assert response.status_code == 202, response.text
    assert response.json()["seq"] == 3
    expected_3 = (3, "carol", {"text": "REST on B"})
    assert summary(await alice.next("event")) == expected_3
    assert summary(await bob.next("event")) == expected_3

    # the third node, which has no member in the room, serves the same history
    response = await cluster.http.get(f"{c.api_url}/rooms/cross/history", headers=bearer("dave"))
    assert response.status_code == 200, response.text
    assert [summary(e) for e in response.json()["events"]] == [expected_1, expected_2, expected_3]
    assert response.json()["position"]["seq"] == 3

    # each event arrived once
    assert await alice.nothing("event") and await bob.nothing("event")


async def test_one_seq_order_on_every_node_under_concurrent_publishers(cluster: Cluster) -> None:
    per_publisher = 100
    total = per_publisher * len(cluster.nodes)
    subscribers = [await cluster.probe(node, f"sub{i}") for i, node in enumerate(cluster.nodes)]
    publishers = [await cluster.probe(node, f"pub{i}") for i, node in enumerate(cluster.nodes)]
    for s in subscribers:
        await s.request("join", room="order")
    for p in publishers:  # publishers subscribe to nothing: they only send
        await p.request("join", room="order", subscriptions=[])

    async def burst(index: int) -> list[int]:
        p = publishers[index]
        acks = await asyncio.gather(*(
            p.request("publish", room="order", event="n", data={"p": index, "i": i}, timeout=30)
            for i in range(per_publisher)
        ))
        return [ack["seq"] for ack in acks]

    ack_seqs = await asyncio.gather(*(burst(i) for i in range(len(publishers))))
    received = [await s.events(total, timeout=15) for s in subscribers]

    # every subscriber: seqs 1..N, each once, ascending
    for node, events in zip(cluster.nodes, received, strict=True):
        assert [e["seq"] for e in events] == list(range(1, total + 1)), f"on {node.name}"
    # the same event at each seq on every node
    mappings = [{e["seq"]: (e["from"], e["data"]["p"], e["data"]["i"]) for e in events}
                for events in received]
    assert mappings[1] == mappings[0] and mappings[2] == mappings[0]
    # the acks agree with what the subscribers saw; one publisher's events keep its order
    for index, seqs in enumerate(ack_seqs):
        assert [mappings[0][seq] for seq in seqs] == [
            (f"pub{index}", index, i) for i in range(per_publisher)]
        assert seqs == sorted(seqs)
    assert sorted(s for seqs in ack_seqs for s in seqs) == list(range(1, total + 1))
    # the publishers' events were really interleaved (concurrent), not one burst after another
    owners = [mappings[0][seq][1] for seq in range(1, total + 1)]
    switches = sum(1 for x, y in itertools.pairwise(owners) if x != y)
    assert switches > len(publishers) - 1, f"publishers never interleaved: {switches} switches"
    for s in subscribers:
        assert await s.nothing("event")


async def test_on_handlers_run_once_per_event_in_the_cluster(cluster: Cluster) -> None:
    a, b = cluster.nodes[:2]
    room, from_ws, from_rest = "handled", 20, 10
    total = from_ws + from_rest
    subscribers = [await cluster.probe(node, f"watcher{i}") for i, node in enumerate(cluster.nodes)]
    for s in subscribers:  # every node has members, so every node receives every event
        await s.request("join", room=room)
    sender = await cluster.probe(a, "sender")
    await sender.request("join", room=room, subscriptions=[])

    for i in range(from_ws):
        await sender.request("publish", room=room, event="tick", data={"i": i})
    for i in range(from_rest):
        response = await cluster.http.post(f"{b.api_url}/rooms/{room}/events", headers=bearer("rest"),
                                           json={"event": "tick", "data": {"i": from_ws + i}})
        assert response.status_code == 202, response.text
    for s in subscribers:
        assert [e["seq"] for e in await s.events(total, timeout=10)] == list(range(1, total + 1))

    async with redis_client() as redis:
        async def counted() -> int:
            return int(await redis.get(cluster.key(f"handled-total:{room}")) or 0)

        await eventually(counted, lambda n: n >= total, what=f"{total} handler runs")
        # settle: a node that ran the handler for events it only received would add to it
        settle_until = time.monotonic() + 0.5
        while time.monotonic() < settle_until:
            assert await counted() == total
            await asyncio.sleep(0.05)
        per_seq = {int(k): int(v) for k, v in
                   (await redis.hgetall(cluster.key(f"handled:{room}"))).items()}
    assert per_seq == {seq: 1 for seq in range(1, total + 1)}


async def test_joins_on_other_nodes_during_a_stream_get_no_gap_and_no_duplicate(cluster: Cluster) -> None:
    """Each joiner is its node's only member: every join subscribes the node to the room
    again, every leave unsubscribes it, while a client of node A keeps publishing."""
    a, b, c = cluster.nodes
    room, rounds = "stream", 5
    talker = await cluster.probe(a, "talker")
    await talker.request("join", room=room, subscriptions=[])
    done = asyncio.Event()

    async def publish() -> int:
        published = 0
        while not done.is_set():
            await talker.request("publish", room=room, event="n", data={"i": published})
            published += 1
            if published > 20_000:
                raise AssertionError("the joiners did not finish")
        return published

    async def cycles(node: NodeProcess, user: str) -> list[tuple[int, list[int]]]:
        p = await cluster.probe(node, user)
        seen: list[tuple[int, list[int]]] = []
        for _ in range(rounds):
            start = (await p.request("join", room=room))["position"]["seq"]
            first = await p.events(3)  # live events flow after the join
            await p.request("leave", room=room)
            # every event of this membership was sent before the leave reply
            rest = []
            while not p.frames.empty():
                rest.append(p.frames.get_nowait())
            seqs = [e["seq"] for e in first + rest if e.get("op") == "event"]
            assert len(seqs) == len(first + rest), first + rest
            seen.append((start, seqs))
        return seen

    publishing = asyncio.create_task(publish())
    try:
        results = await asyncio.gather(cycles(b, "joiner-b"), cycles(c, "joiner-c"))
    finally:
        done.set()
        total = await publishing
    for node, seen in zip((b, c), results, strict=True):
        for start, seqs in seen:
            assert seqs == list(range(start + 1, start + 1 + len(seqs))), (
                f"on {node.name}: joined at seq {start}, then got {seqs}")
    assert total >= rounds * 3
