"""Three real node processes on a real local Redis Cluster (3 masters, 3 replicas).

The cluster is this module's own (``redis-server`` processes started by the
test, see ``tests/redis_cluster.py``): its tests move a slot and SIGKILL a
master, in that order, after the ones that only read and write. Every node
runs the ``redis+cluster://`` broker (``shard_app.py``); clients are real
WebSocket and HTTP clients of the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nodes import NodeProcess, bearer, eventually, node_env, start_all, stop_all
from redis_cluster import LocalRedisCluster, private_cluster
from websockets.exceptions import ConnectionClosed

from dialogue_fastapi.brokers.redis_scripts import RoomKeys
from dialogue_fastapi.testing import ProbeError, WsProbe


class Shards:
    """The Redis Cluster, the app nodes on it, and rooms placed on each master."""

    def __init__(self, redis: LocalRedisCluster, prefix: str, nodes: list[NodeProcess]) -> None:
        self.redis, self.prefix, self.nodes = redis, prefix, nodes
        self.probes: list[WsProbe] = []
        self.http = httpx.AsyncClient(timeout=10)

    async def probe(self, node: NodeProcess, user: str) -> WsProbe:
        probe = await WsProbe.open(node.ws_url(user))
        self.probes.append(probe)
        return probe

    async def slot(self, room: str) -> int:
        return await self.redis.slot_of(RoomKeys(self.prefix, room, tagged=True).seq)

    async def room_on(self, master_port: int, family: str = "r") -> str:
        """A fresh room id whose hash slot the master on ``master_port`` serves."""
        for i in itertools.count():
            room = f"{family}:{secrets.token_hex(3)}{i}"
            if await self.redis.owner_of(await self.slot(room)) == master_port:
                return room
        raise AssertionError("unreachable")

    async def join_when_served(self, node: NodeProcess, user: str, **join: Any
                               ) -> tuple[WsProbe, dict[str, Any]]:
        """Connect and join as a client does right after a failover: a node whose cluster
        client still has the old slot map answers UNAVAILABLE (or closes with 1013) for a
        moment; retry, with a pause, until it serves (at most 30 s)."""
        async with asyncio.timeout(30):
            while True:
                probe = await self.probe(node, user)
                try:
                    return probe, await probe.request("join", **join)
                except (ProbeError, ConnectionClosed, TimeoutError) as exc:
                    if isinstance(exc, ProbeError) and exc.code != "UNAVAILABLE":
                        raise
                    await probe.close()
                    await asyncio.sleep(0.2)

    async def close_clients(self) -> None:
        for probe in self.probes:
            with contextlib.suppress(Exception):
                await probe.close()
        self.probes.clear()


@pytest.fixture(scope="module")
async def shards(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shards]:
    async with private_cluster(tmp_path_factory.mktemp("redis-cluster-nodes")) as redis:
        prefix = f"dshard{secrets.token_hex(3)}:"
        # node_ttl=5: a killed node's connections leave presence within about 7 s, and a
        # master's failover (the whole cluster answers CLUSTERDOWN for about a second, and
        # redis-py retries) does not silence a node's heartbeat for a whole TTL, which would
        # get it reaped (1013)
        env = node_env(redis.url, prefix,
                       {"CLUSTER_BROKER_URL": f"{redis.url}?prefix={prefix}&node_ttl=5"})
        log_dir = tmp_path_factory.mktemp("shard-nodes")
        nodes = [NodeProcess(f"node{n}", env, log_dir, app="shard_app:app") for n in "ABC"]
        try:
            await start_all(nodes)
            yield Shards(redis, prefix, nodes)
        finally:
            await stop_all(nodes)


@pytest.fixture
async def cluster(shards: Shards) -> AsyncIterator[Shards]:
    for node in shards.nodes:
        assert node.running, node.failure("the node is not running")
    try:
        yield shards
    finally:
        await shards.close_clients()
        await shards.http.aclose()
        shards.http = httpx.AsyncClient(timeout=10)


def summary(event: dict[str, Any]) -> tuple[int, str, Any]:
    return event["seq"], event["from"], event["data"]


async def test_rooms_on_every_shard_deliver_across_nodes(cluster: Shards) -> None:
    a, b, c = cluster.nodes
    masters = await cluster.redis.masters()
    assert len(masters) == 3
    alice, bob = await cluster.probe(a, "alice"), await cluster.probe(b, "bob")
    carol = await cluster.probe(c, "carol")
    for master in masters:
        room = await cluster.room_on(master.port)
        await alice.request("join", room=room)
        await bob.request("join", room=room)
        await carol.request("join", room=room, subscriptions=[])
        ack = await carol.request("publish", room=room, event="msg", data={"on": master.port})
        assert ack["seq"] == 1
        expected = (1, "carol", {"on": master.port})
        assert summary(await alice.next("event")) == expected
        assert summary(await bob.next("event")) == expected
        # the history a third node serves comes from the same shard
        response = await cluster.http.get(f"{c.api_url}/rooms/{room}/history",
                                          headers=bearer("dave"))
        assert response.status_code == 200, response.text
        assert [summary(e) for e in response.json()["events"]] == [expected]
    assert await alice.nothing("event") and await bob.nothing("event")


async def test_send_to_user_reaches_the_users_node_only(cluster: Shards) -> None:
    a, b, c = cluster.nodes
    bob = await cluster.probe(b, "bob-direct")
    other = await cluster.probe(a, "someone-else")
    response = await cluster.http.post(f"{c.http_url}/test/send_to_user",
                                       json={"user": "bob-direct", "event": "ping", "data": 7})
    assert response.status_code == 200, response.text
    frame = await bob.next("direct")
    assert (frame["event"], frame["data"]) == ("ping", 7)
    assert await other.nothing("direct")
    clients = (await cluster.http.get(f"{a.http_url}/test/clients/bob-direct")).json()["clients"]
    assert clients == [bob.hello["client_id"]]


async def test_max_size_and_presence_hold_across_nodes(cluster: Shards) -> None:
    room = await cluster.room_on((await cluster.redis.masters())[1].port, family="lobby")
    probes = [await cluster.probe(node, f"u{i}") for i, node in enumerate(cluster.nodes)]
    for probe in probes:
        await probe.request("join", room=room)
    extra = await cluster.probe(cluster.nodes[0], "u3")
    refused = await extra.reply("join", room=room)
    assert not refused["ok"] and refused["error"]["code"] == "ROOM_FULL", refused
    presence = await probes[2].request("presence", room=room)
    assert sorted(m["user_id"] for m in presence["users"]) == ["u0", "u1", "u2"]
    await probes[1].close()  # its node removes it from the room's hash in its slot
    joined = await eventually(lambda: extra.reply("join", room=room),
                              lambda r: bool(r["ok"]), what="a free place")
    assert joined["result"]["room"]["id"] == room


async def test_one_order_per_room_under_concurrent_publishers(cluster: Shards) -> None:
    room = await cluster.room_on((await cluster.redis.masters())[2].port)
    per_publisher = 50
    subscribers = [await cluster.probe(n, f"sub{i}") for i, n in enumerate(cluster.nodes)]
    publishers = [await cluster.probe(n, f"pub{i}") for i, n in enumerate(cluster.nodes[:2])]
    for s in subscribers:
        await s.request("join", room=room)
    for p in publishers:
        await p.request("join", room=room, subscriptions=[])

    async def burst(index: int) -> list[int]:
        acks = await asyncio.gather(*(
            publishers[index].request("publish", room=room, event="n", data={"p": index, "i": i},
                                      timeout=30)
            for i in range(per_publisher)))
        return [ack["seq"] for ack in acks]

    seqs = await asyncio.gather(burst(0), burst(1))
    total = 2 * per_publisher
    assert sorted(seqs[0] + seqs[1]) == list(range(1, total + 1))
    seen = [[(e["seq"], e["data"]["p"], e["data"]["i"]) for e in await s.events(total, timeout=30)]
            for s in subscribers]
    assert seen[0] == seen[1] == seen[2]
    assert [seq for seq, _, _ in seen[0]] == list(range(1, total + 1))
    for p in (0, 1):  # each publisher's own events keep its order
        assert [i for _, q, i in seen[0] if q == p] == list(range(per_publisher))


async def test_a_killed_nodes_connections_leave_presence(cluster: Shards) -> None:
    """SIGKILL an app node: a survivor claims it (one script in the liveness slot) and
    removes its connections from the rooms and users in their own slots; members on
    the other nodes are told once."""
    a, b, c = cluster.nodes
    room = await cluster.room_on((await cluster.redis.masters())[0].port, family="lobby")
    observer = await cluster.probe(a, "observer")
    await observer.request("join", room=room)
    doomed = await cluster.probe(c, "doomed")
    await doomed.request("join", room=room)
    joined = await observer.next("presence_join")
    assert joined["user_id"] == "doomed"
    await c.kill()
    left = await observer.next("presence_leave", timeout=15)
    assert (left["user_id"], left["client_id"]) == ("doomed", doomed.hello["client_id"])
    assert await observer.nothing("presence_leave", wait=1.0)  # told once, by one survivor
    presence = await observer.request("presence", room=room)
    assert [u["user_id"] for u in presence["users"]] == ["observer"]
    clients = (await cluster.http.get(f"{b.http_url}/test/clients/doomed")).json()["clients"]
    assert clients == []
    await c.start()  # the module's later tests use three nodes again


class Flow:
    """A publisher on one node sending numbered events one at a time; what it got acked."""

    def __init__(self, probe: WsProbe, room: str) -> None:
        self.probe, self.room = probe, room
        self.acked: list[tuple[int, int]] = []  # (seq, n)
        self.failed = 0
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            reply = await self.probe.reply("publish", room=self.room, event="n", data={"n": n},
                                           timeout=30)
            if not reply["ok"]:
                self.failed += 1  # not acknowledged (the shard was failing over): not counted
                await asyncio.sleep(0.05)
            else:
                self.acked.append((reply["result"]["seq"], n))
            await asyncio.sleep(0.005)

    async def until(self, count: int) -> None:
        await eventually(lambda: asyncio.sleep(0, len(self.acked)), lambda k: k >= count,
                         timeout=30, what=f"{count} acknowledged publishes")

    async def finish(self) -> list[tuple[int, int]]:
        self.stop.set()
        await asyncio.wait_for(self.task, 35)
        return self.acked


async def collect(probe: WsProbe, timeout: float = 1.0) -> list[dict[str, Any]]:
    """The events that arrived, until none for ``timeout`` seconds."""
    events: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            events.append(await probe.next("event", timeout=timeout))
    return events


async def receive(probe: WsProbe, seqs: set[int], timeout: float = 20.0) -> list[dict[str, Any]]:
    """The events that arrive until every seq in ``seqs`` did, the server closed the
    connection, or ``timeout`` passed; then any more for 0.5 s (a duplicate would show).
    A node that follows a moved slot repairs the gap from the stream when it gets there."""
    events: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if seqs <= {e["seq"] for e in events}:
            break
        if probe.ws.close_code is not None and probe.frames.empty():
            break
        with contextlib.suppress(TimeoutError):
            events.append(await probe.next("event", timeout=0.2))
    return events + await collect(probe, timeout=0.5)


async def test_a_slot_moves_to_another_master_while_the_room_is_live(cluster: Shards) -> None:
    a, b, c = cluster.nodes
    masters = await cluster.redis.masters()
    room = await cluster.room_on(masters[0].port)
    watchers = [await cluster.probe(b, "watch-b"), await cluster.probe(c, "watch-c")]
    for w in watchers:
        await w.request("join", room=room)
    publisher = await cluster.probe(a, "mover")
    await publisher.request("join", room=room, subscriptions=[])
    flow = Flow(publisher, room)
    await flow.until(20)
    await cluster.redis.migrate_slot(await cluster.slot(room), masters[1].port)
    assert await cluster.redis.owner_of(await cluster.slot(room)) == masters[1].port
    await flow.until(len(flow.acked) + 30)  # it goes on, through the new owner
    acked = await flow.finish()
    for w in watchers:
        events = await receive(w, {s for s, _ in acked})
        got = [(e["seq"], e["data"]["n"]) for e in events]
        assert got == acked, f"{w.hello['client_id']}: {got[:5]}... vs {acked[:5]}..."
    assert [s for s, _ in acked] == list(range(1, len(acked) + 1))


async def test_a_master_killed_while_events_flow(cluster: Shards) -> None:
    """SIGKILL the master of a live room: its replica takes over. A member either gets
    every acknowledged event once, in order, or is told to resync (1012), and then a
    recovering join answers ``recovered: false``; a client that recovers after the
    failover from a position it had gets every acknowledged event after it, or
    ``recovered: false``."""
    a, b, c = cluster.nodes
    masters = await cluster.redis.masters()
    victim = masters[2].port
    room = await cluster.room_on(victim)
    member = await cluster.probe(b, "member")
    await member.request("join", room=room)
    early = await cluster.probe(c, "early")
    joined = await early.request("join", room=room)
    publisher = await cluster.probe(a, "killer")
    await publisher.request("join", room=room, subscriptions=[])
    flow = Flow(publisher, room)
    await flow.until(15)
    early_events = await early.events(5, timeout=10)
    position = {"seq": early_events[-1]["seq"], "epoch": joined["position"]["epoch"]}
    await early.close()  # it comes back after the failover from this position
    replica = await cluster.redis.kill_master(victim)
    await flow.until(len(flow.acked) + 20)
    acked = await flow.finish()
    assert await cluster.redis.owner_of(await cluster.slot(room)) == replica

    events = await receive(member, {s for s, _ in acked})
    got = [(e["seq"], e["data"]["n"]) for e in events]
    assert [s for s, _ in got] == sorted({s for s, _ in got}), "out of order or twice"
    reset = member.ws.close_code is not None
    if not reset:
        assert set(acked) <= set(got), f"acknowledged but not delivered: {set(acked) - set(got)}"
    else:
        assert member.ws.close_code == 1012
        last = {"seq": got[-1][0], "epoch": joined["position"]["epoch"]}
        again = await cluster.probe(b, "member")
        answer = await again.request("join", room=room, since=last)
        assert answer["recovered"] is False

    back = await cluster.probe(c, "early")
    answer = await back.request("join", room=room, since=position)
    if answer["recovered"]:
        replayed = [(e["seq"], e["data"]["n"]) for e in answer["events"]]
        assert [s for s, _ in replayed] == list(range(position["seq"] + 1, replayed[-1][0] + 1))
        assert {x for x in acked if x[0] > position["seq"]} <= set(replayed)
    await cluster.redis.restart(victim)  # it rejoins as the replica of its replacement


async def test_a_failover_that_lost_acknowledged_events_tells_members_to_resync(
        cluster: Shards) -> None:
    """A real loss: events 4 and 5 are acknowledged by the master and delivered to a member,
    then the master dies before its replica got them (``kill_master_losing_writes``). The
    room's members are closed with 1012; recovering from seq 5 of the old epoch answers
    ``recovered: false``; the room goes on in a new epoch after seq 5, so no seq a client
    saw is given to another event."""
    a, b, _ = cluster.nodes
    victim = (await cluster.redis.masters())[0].port
    room = await cluster.room_on(victim)
    member = await cluster.probe(b, "member")
    joined = await member.request("join", room=room)
    publisher = await cluster.probe(a, "publisher")
    await publisher.request("join", room=room, subscriptions=[])
    for n in (1, 2, 3):
        await publisher.request("publish", room=room, event="n", data={"n": n})
    await member.events(3, timeout=10)
    await cluster.redis.wait_replicated(victim)

    async def acknowledged_then_lost() -> None:
        for n in (4, 5):
            result = await publisher.request("publish", room=room, event="n", data={"n": n})
            assert result["seq"] == n
        assert [e["seq"] for e in await member.events(2, timeout=10)] == [4, 5]

    await cluster.redis.kill_master_losing_writes(victim, acknowledged_then_lost)
    for probe in (member, publisher):  # every member of the room, on every node
        assert (await probe.closed(timeout=30))[0] == 1012
    old = {"seq": 5, "epoch": joined["position"]["epoch"]}
    again, answer = await cluster.join_when_served(b, "member", room=room, since=old)
    assert answer["recovered"] is False
    assert answer["position"]["epoch"] != old["epoch"] and answer["position"]["seq"] == 5
    publisher, _ = await cluster.join_when_served(a, "publisher", room=room, subscriptions=[])
    result = await publisher.request("publish", room=room, event="n", data={"n": 6})
    assert result["seq"] == 6
    assert [(e["seq"], e["data"]) for e in await again.events(1, timeout=10)] == [(6, {"n": 6})]
    await cluster.redis.restart(victim)  # it rejoins as the replica of its replacement
