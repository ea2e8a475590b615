"""Room-family instances across real node processes sharing Redis: one order per instance,
members only, ``max_size`` per instance, and a node listens only to instances it has
members in."""

from __future__ import annotations

import asyncio

from nodes import Cluster, eventually
from redis_helpers import redis_client

from dialogue_fastapi.brokers.redis_scripts import RoomKeys
from dialogue_fastapi.testing import ProbeError

NODES = 2


async def listeners(cluster: Cluster, room: str) -> int:
    """Nodes subscribed to the room's channel in Redis."""
    async with redis_client() as client:
        [(_, count)] = await client.pubsub_numsub(RoomKeys(cluster.prefix, room).channel)
    return int(count)


async def test_an_instance_has_one_order_across_nodes_for_its_members_only(cluster: Cluster) -> None:
    a, b = cluster.nodes
    room = "dm:alice:bob"
    alice, bob = await cluster.probe(a, "alice"), await cluster.probe(b, "bob")
    carol = await cluster.probe(b, "carol")
    await alice.request("join", room=room)
    await bob.request("join", room=room)
    for who in (carol, await cluster.probe(a, "carol")):
        refused = await who.reply("join", room=room)
        assert refused["error"]["code"] == "FORBIDDEN", refused
    await asyncio.gather(
        *(alice.request("publish", room=room, event="note", data=f"a{i}") for i in range(20)),
        *(bob.request("publish", room=room, event="note", data=f"b{i}") for i in range(20)),
    )
    seen_by_alice = [(e["seq"], e["data"]) for e in await alice.events(40)]
    seen_by_bob = [(e["seq"], e["data"]) for e in await bob.events(40)]
    assert seen_by_alice == seen_by_bob
    assert [seq for seq, _ in seen_by_alice] == list(range(1, 41))
    assert await carol.nothing()


async def test_max_size_holds_per_instance_across_nodes(cluster: Cluster) -> None:
    where = [cluster.nodes[i % 2] for i in range(5)]
    clients = list(await asyncio.gather(*(cluster.probe(n, f"t{i}") for i, n in enumerate(where))))
    replies = await asyncio.gather(*(c.reply("join", room="team:1") for c in clients))
    admitted = [r for r in replies if r["ok"]]
    assert len(admitted) == 3, replies
    assert {r["error"]["code"] for r in replies if not r["ok"]} == {"ROOM_FULL"}
    other = await asyncio.gather(*(c.reply("join", room="team:2") for c in clients[:3]))
    assert all(r["ok"] for r in other), other  # another instance has its own places


async def test_a_node_listens_only_to_instances_with_local_members(cluster: Cluster) -> None:
    a, b = cluster.nodes
    room = "dm:dora:eve"
    dora, eve = await cluster.probe(a, "dora"), await cluster.probe(b, "eve")
    assert await listeners(cluster, room) == 0
    await dora.request("join", room=room)
    await eve.request("join", room=room)
    assert await listeners(cluster, room) == 2
    await dora.request("leave", room=room)
    await eventually(lambda: listeners(cluster, room), lambda n: n == 1,
                     what=f"one node listening to {room}")
    await eve.close()
    await eventually(lambda: listeners(cluster, room), lambda n: n == 0,
                     what=f"no node listening to {room}")
    try:
        await dora.request("publish", room=room, event="note", data="gone")
    except ProbeError as exc:
        assert exc.error["code"] == "NOT_IN_ROOM"
    else:
        raise AssertionError("a publish by someone who left was accepted")
