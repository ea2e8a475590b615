"""A node whose Redis pub/sub connection is killed keeps delivering every event once, in order.

Two uvicorn processes share the real Redis; the test kills, inside Redis, only
the subscriber connection of one node (client name ``dialogue-sub-<node_id>``)
while a client of the other node keeps publishing.
"""

from __future__ import annotations

import asyncio

from nodes import Cluster, eventually
from redis_helpers import redis_client

NODES = 2


async def subscriber_ids(node_id: str) -> list[int]:
    """Redis client ids of a node's pub/sub connection(s), found by its client name."""
    async with redis_client() as redis:
        clients = await redis.client_list(_type="pubsub")
    return [int(c["id"]) for c in clients if c.get("name") == f"dialogue-sub-{node_id}"]


async def test_killed_pubsub_connection_loses_and_repeats_nothing(cluster: Cluster) -> None:
    a, b = cluster.nodes
    room = "killed"
    node_b = (await cluster.node_info(b))["node_id"]
    node_a = (await cluster.node_info(a))["node_id"]
    listener = await cluster.probe(b, "listener")
    await listener.request("join", room=room)
    control = await cluster.probe(a, "control")  # a member on the node that is not touched
    await control.request("join", room=room)
    talker = await cluster.probe(a, "talker")
    await talker.request("join", room=room, subscriptions=[])
    before = await subscriber_ids(node_b)
    assert len(before) == 1, f"node B should have one pub/sub connection: {before}"
    others = await subscriber_ids(node_a)
    assert len(others) == 1

    killed = asyncio.Event()
    after_kill, limit = 150, 2000

    async def publish() -> int:
        """Publish before, during and after the kill; returns how many were published."""
        published = since_kill = 0
        while since_kill < after_kill:
            await talker.request("publish", room=room, event="n", data={"i": published})
            published += 1
            if killed.is_set():
                since_kill += 1
            elif published >= limit:
                raise AssertionError(f"the pub/sub connection was not killed within {limit} events")
        return published

    publishing = asyncio.create_task(publish())
    try:
        head = await listener.events(20)  # live delivery is running on B
        async with redis_client() as redis:
            result = await redis.execute_command("CLIENT", "KILL", "ID", before[0])
        killed.set()
        assert result == 1
        total = await publishing
    finally:
        if not publishing.done():
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)

    events = head + await listener.events(total - len(head), timeout=15)
    assert [e["seq"] for e in events] == list(range(1, total + 1))
    assert [e["data"]["i"] for e in events] == list(range(total))
    assert [e["seq"] for e in await control.events(total, timeout=15)] == list(range(1, total + 1))
    assert await listener.nothing("event")

    # node B reconnected by itself (a new pub/sub connection), node A kept its own
    await eventually(lambda: subscriber_ids(node_b), lambda ids: len(ids) == 1 and ids != before,
                     what="a new pub/sub connection of node B")
    assert await subscriber_ids(node_a) == others
    # and is ready again by itself
    await eventually(lambda: cluster.ready(b), lambda status: status == 200, timeout=15,
                     what="GET /ready on node B answering 200")
    # live delivery after the reconnection
    ack = await talker.request("publish", room=room, event="n", data={"i": total})
    assert ack["seq"] == total + 1
    assert (await listener.next("event"))["seq"] == total + 1
