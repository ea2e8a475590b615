"""The ``redis+cluster://`` broker on a real local Redis Cluster (3 masters, 3 replicas).

The broker contract runs on the shared cluster; the tests that move slots use
a private one. A failover that loses acknowledged writes is caused for real
(``LocalRedisCluster.kill_master_losing_writes``: the replica is frozen and cut
off, the master acknowledges events alone and is killed). The loss is also
made by hand, in two forms: the room's seq and last stream entry are taken
back as a replica would have them, then the room's slot moves and the
subscriber must notice that the shard does not hold what it delivered.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis_cluster import LocalRedisCluster, call

from dialogue_fastapi.brokers import broker_from_config
from dialogue_fastapi.brokers.redis_cluster import RedisClusterBroker, cluster_nodes
from dialogue_fastapi.brokers.redis_scripts import RoomKeys
from dialogue_fastapi.core.types import EventMessage
from dialogue_fastapi.testing import BrokerContract
from dialogue_fastapi.testing.broker_contract import RecordingSink


class TestRedisClusterBroker(BrokerContract):
    """The contract every broker passes, on the shared Redis Cluster."""

    @pytest.fixture
    async def broker(self, redis_cluster: LocalRedisCluster, cluster_prefix: str
                     ) -> AsyncIterator[RedisClusterBroker]:
        yield RedisClusterBroker(f"{redis_cluster.url}?prefix={cluster_prefix}")


def test_the_url_names_the_seed_nodes_and_the_options() -> None:
    broker = broker_from_config("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2?prefix=app:")
    assert isinstance(broker, RedisClusterBroker)
    assert broker.seeds == [("10.0.0.1", 7000), ("10.0.0.2", 6379)]
    assert broker.prefix == "app:"
    assert cluster_nodes("rediss+cluster://h:1")[1] == {"ssl": True}
    assert cluster_nodes("redis+cluster://:secret@h:1")[1] == {"password": "secret"}
    with pytest.raises(ValueError, match="hash tag"):
        RedisClusterBroker("redis+cluster://h:1?prefix={app}:")
    with pytest.raises(ValueError, match="host:port"):
        RedisClusterBroker("redis+cluster://h:1,,h:2")


def message(room: str, n: int) -> EventMessage:
    return EventMessage(room=room, event="e", data={"n": n}, from_="u")


async def room_on(cluster: LocalRedisCluster, prefix: str, port: int, taken: set[int]) -> str:
    """A room whose slot the master on ``port`` serves, in a slot no other room here uses."""
    for i in itertools.count():
        room = f"room{i}-{secrets.token_hex(2)}"
        slot = await cluster.slot_of(RoomKeys(prefix, room, tagged=True).seq)
        if slot not in taken and await cluster.owner_of(slot) == port:
            taken.add(slot)
            return room
    raise AssertionError("unreachable")


async def started(url: str) -> tuple[RedisClusterBroker, RecordingSink]:
    broker, sink = RedisClusterBroker(url), RecordingSink()
    await broker.start(sink.on_event, sink.on_control)
    return broker, sink


Pair = tuple[RedisClusterBroker, RecordingSink, RedisClusterBroker, RecordingSink]


@asynccontextmanager
async def two_nodes(url: str) -> AsyncIterator[Pair]:
    """Two started brokers on the cluster (a subscriber's node and a publisher's), stopped
    afterwards."""
    subscriber, sink = await started(url)
    publisher, publisher_sink = await started(url)
    try:
        yield subscriber, sink, publisher, publisher_sink
    finally:
        await publisher.stop()
        await subscriber.stop()


async def subscriber_connections(cluster: LocalRedisCluster, node_id: str) -> dict[int, int]:
    """Per master port: this node's sharded subscriber connections to it."""
    found = {}
    for master in await cluster.masters():
        listing = (await call(master.port, "CLIENT", "LIST")).decode()
        found[master.port] = listing.count(f"name=dialogue-sub-{node_id} ")
    return found


async def test_one_connection_per_master_the_node_reads(redis_cluster: LocalRedisCluster,
                                                        cluster_prefix: str) -> None:
    url = f"{redis_cluster.url}?prefix={cluster_prefix}"
    async with two_nodes(url) as (broker, sink, publisher, _):
        masters = [m.port for m in await redis_cluster.masters()]
        presence = broker.presence
        control = await redis_cluster.owner_of(await redis_cluster.slot_of(f"{cluster_prefix}{{cluster}}"))
        own = await redis_cluster.owner_of(
            await redis_cluster.slot_of(presence.node_channel(broker.node_id)))
        needed = {control, own}
        rooms, taken = [], set[int]()
        for port in masters:  # a room on every master, two on the first
            rooms.append(await room_on(redis_cluster, cluster_prefix, port, taken))
        rooms.append(await room_on(redis_cluster, cluster_prefix, masters[0], taken))
        for room in rooms:
            await broker.subscribe(room)
        for n, room in enumerate(rooms):
            await publisher.publish(message(room, n), window=10)
        events = await sink.wait_events(len(rooms))
        assert sorted(e.room for e in events) == sorted(rooms)
        counts = await subscriber_connections(redis_cluster, broker.node_id)
        assert counts == {port: 1 for port in masters}, counts
        for room in rooms:  # leaving the rooms closes the connections no longer needed
            await broker.unsubscribe(room)
        expected = {port: int(port in needed) for port in masters}

        async def settled() -> dict[int, int]:
            for _ in range(100):
                counts = await subscriber_connections(redis_cluster, broker.node_id)
                if counts == expected:
                    break
                await asyncio.sleep(0.05)
            return counts

        assert await settled() == expected


async def wait_for(check: Any, what: str, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("lost", ["taken-again", "gone"])
async def test_a_shard_that_lost_delivered_events_starts_a_new_epoch(
    redis_cluster_private: LocalRedisCluster, lost: str,
) -> None:
    """``taken-again``: after the loss another event got the lost seq (its timestamp
    differs); ``gone``: the shard's seq is behind what the node delivered."""
    cluster, prefix = redis_cluster_private, "dloss:"
    url = f"{cluster.url}?prefix={prefix}"
    async with two_nodes(url) as (subscriber, sink, publisher, publisher_sink):
        masters = [m.port for m in await cluster.masters()]
        room = await room_on(cluster, prefix, masters[0], set())
        keys = RoomKeys(prefix, room, tagged=True)
        await subscriber.subscribe(room)
        for n in range(4):
            await publisher.publish(message(room, n), window=10)
        await sink.wait_events(4)
        before = await publisher.position(room)
        assert before.seq == 4

        # what a replica that missed the last write holds: seq 3, no entry 4
        kept = await call(masters[0], "XRANGE", keys.stream, "-", "3-0")
        await call(masters[0], "DEL", keys.stream)  # (XDEL would keep 4-0 as the stream's top)
        for entry_id, fields in kept:
            await call(masters[0], "XADD", keys.stream, entry_id, *fields)
        await call(masters[0], "SET", keys.seq, 3)
        if lost == "taken-again":
            await asyncio.sleep(0.005)  # another millisecond: another timestamp
            retaken = await publisher.publish(message(room, 99), window=10)
            assert retaken.message.seq == 4
        await cluster.migrate_slot(await cluster.slot_of(keys.seq), masters[1])

        def reset_seen(s: RecordingSink) -> bool:
            return {"type": "room_reset", "room": room} in s.controls

        await wait_for(lambda: reset_seen(sink) and reset_seen(publisher_sink), "room_reset")
        after = await publisher.position(room)
        assert after.epoch != before.epoch and after.seq == 4
        assert [e.data["n"] for e in sink.events] == [0, 1, 2, 3]  # the retaken 4 is not sent
        published = await publisher.publish(message(room, 5), window=10)
        assert published.message.seq == 5 and published.epoch == after.epoch
        events = await sink.wait_events(5)
        assert (events[-1].seq, events[-1].data) == (5, {"n": 5})
        # the old epoch's window is gone: positions in it cannot be recovered from Redis
        assert await publisher.read(room, 3) is None


async def test_a_real_failover_that_lost_acknowledged_events_starts_a_new_epoch(
    redis_cluster_private: LocalRedisCluster,
) -> None:
    """The loss for real: events 5 and 6 are acknowledged by the master and delivered, but
    never reach its replica (``kill_master_losing_writes``); the replica is promoted with
    seq 4. The subscriber's node must notice that the new master lacks what it delivered,
    start a new epoch at seq 6 (no seq is handed out twice) and tell every node."""
    cluster, prefix = redis_cluster_private, "dreal:"
    url = f"{cluster.url}?prefix={prefix}"
    async with two_nodes(url) as (subscriber, sink, publisher, publisher_sink):
        master = (await cluster.masters())[0].port
        room = await room_on(cluster, prefix, master, set())
        keys = RoomKeys(prefix, room, tagged=True)
        await subscriber.subscribe(room)
        for n in range(1, 5):
            await publisher.publish(message(room, n), window=10)
        await sink.wait_events(4)
        before = await publisher.position(room)
        await cluster.wait_replicated(master)  # events 1-4 are on the replica

        async def acknowledged_then_lost() -> None:
            for n in (5, 6):
                published = await publisher.publish(message(room, n), window=10)
                assert published.message.seq == n  # acknowledged by the master
            await sink.wait_events(6)  # and delivered

        promoted = await cluster.kill_master_losing_writes(master, acknowledged_then_lost)
        # The new master lost 5 and 6: it still holds seq 4 in the old epoch, unless the
        # subscriber's node already noticed and moved the room to a new epoch (one MGET, as
        # the repair script sets both keys at once). A replica that had kept 5 and 6 would
        # show seq 6 in the old epoch and fail here.
        seq, epoch = await call(promoted, "MGET", keys.seq, keys.epoch)
        assert int(seq) <= 4 or epoch.decode() != before.epoch

        def reset_seen(s: RecordingSink) -> bool:
            return {"type": "room_reset", "room": room} in s.controls

        await wait_for(lambda: reset_seen(sink) and reset_seen(publisher_sink), "room_reset", 30)
        after = await publisher.position(room)
        assert after.epoch != before.epoch and after.seq == 6  # 5 and 6 are not handed out again
        published = await publisher.publish(message(room, 7), window=10)
        assert (published.message.seq, published.epoch) == (7, after.epoch)
        events = await sink.wait_events(7)
        assert [(e.seq, e.data["n"]) for e in events] == [(n, n) for n in range(1, 8)]
        assert await publisher.read(room, 5) is None  # the old epoch cannot be recovered


async def test_a_room_the_shard_lost_continues_from_the_store(redis_cluster: LocalRedisCluster,
                                                              cluster_prefix: str) -> None:
    """A shard that restarted empty has no epoch for the room: the position comes from the
    store, once the master that owns the room has been up longer than the fence."""
    from dialogue_fastapi.brokers.base import StoredRooms
    from dialogue_fastapi.core.types import Position

    asked: list[str] = []

    async def position_of(room: str) -> Position | None:
        asked.append(room)
        return Position(41, "stored-epoch")

    async def read_after(room: str, after: int, limit: int) -> list[EventMessage]:
        return []

    broker, sink = RedisClusterBroker(f"{redis_cluster.url}?prefix={cluster_prefix}"), RecordingSink()
    broker.use_store(StoredRooms(position_of, read_after, fence=0.5))
    await broker.start(sink.on_event, sink.on_control)
    try:
        owner = await redis_cluster.owner_of(
            await redis_cluster.slot_of(RoomKeys(cluster_prefix, "stored", tagged=True).seq))
        info = (await call(owner, "INFO", "server")).decode()
        uptime = int(info.split("uptime_in_seconds:", 1)[1].split()[0])
        assert abs(await broker._held_for_room("stored") - uptime) <= 1  # that master's uptime
        published = await broker.publish(message("stored", 1), window=10)
        assert (published.message.seq, published.epoch) == (42, "stored-epoch")
        assert asked == ["stored"]
    finally:
        await broker.stop()


async def test_a_shard_restarted_empty_resets_its_rooms(redis_cluster_private: LocalRedisCluster
                                                         ) -> None:
    """A shard's master and replica both restart without their data (no persistence): the
    node reconnects when the shard is back, sees the room's epoch gone, and its members are
    told to resync; the room goes on from seq 1 in a new epoch. A room on another shard
    keeps its order and epoch throughout."""
    cluster, prefix = redis_cluster_private, "drestart:"
    url = f"{cluster.url}?prefix={prefix}"
    async with two_nodes(url) as (subscriber, sink, publisher, _):
        masters = [m.port for m in await cluster.masters()]
        taken: set[int] = set()
        room = await room_on(cluster, prefix, masters[1], taken)
        other = await room_on(cluster, prefix, masters[2], taken)
        await subscriber.subscribe(room)
        await subscriber.subscribe(other)
        for n in range(3):
            await publisher.publish(message(room, n), window=10)
            await publisher.publish(message(other, n), window=10)
        await sink.wait_events(6)
        before, other_before = await publisher.position(room), await publisher.position(other)
        replica = await cluster.replica_of(masters[1])
        await cluster.kill(replica)
        await cluster.kill(masters[1])
        await cluster.restart(masters[1])
        await cluster.restart(replica)
        await wait_for(lambda: {"type": "room_reset", "room": room} in sink.controls, "room_reset")
        after = await publisher.position(room)
        assert after.epoch != before.epoch and after.seq == 0
        published = await publisher.publish(message(room, 10), window=10)
        assert published.message.seq == 1
        assert {"type": "room_reset", "room": other} not in sink.controls
        still = await publisher.publish(message(other, 3), window=10)
        assert (still.message.seq, still.epoch) == (4, other_before.epoch)
        await wait_for(lambda: [(e.room, e.seq) for e in sink.events][-2:] in (
            [(room, 1), (other, 4)], [(other, 4), (room, 1)]), "both rooms' next events")


async def test_a_burst_of_presence_writes_waits_for_connections(
    redis_cluster: LocalRedisCluster, cluster_prefix: str,
) -> None:
    """More concurrent writes than the pool's connections: they wait, none fails (redis-py's
    cluster client alone raises MaxConnectionsError)."""
    from dialogue_fastapi.core.types import PresenceEntry

    broker, sink = RedisClusterBroker(f"{redis_cluster.url}?prefix={cluster_prefix}",
                                      max_connections=3), RecordingSink()
    await broker.start(sink.on_event, sink.on_control)
    try:
        entries = [PresenceEntry(f"user{i % 7}", f"client{i}") for i in range(150)]
        await asyncio.gather(*(broker.presence.connect(e) for e in entries))
        await asyncio.gather(*(broker.presence.join("burst", e, None) for e in entries))
        assert await broker.presence.count("burst") == 150
        await asyncio.gather(*(broker.presence.disconnect(e) for e in entries))
        assert await broker.presence.count("burst") == 0
        assert await broker.presence.clients_of("user3") == []
    finally:
        await broker.stop()


async def test_a_sweep_left_unfinished_by_a_dead_survivor_is_taken_over(
    redis_cluster: LocalRedisCluster, cluster_prefix: str,
) -> None:
    """A survivor claimed a dead node and died before removing its connections: the next
    survivor's sweep takes the claim over and removes them from their rooms and users."""
    from dialogue_fastapi.brokers.redis_cluster_presence import ClusterPresence
    from dialogue_fastapi.core.types import PresenceEntry

    broker, sink = RedisClusterBroker(f"{redis_cluster.url}?prefix={cluster_prefix}"), RecordingSink()
    await broker.start(sink.on_event, sink.on_control)
    try:
        dead = ClusterPresence(cluster_prefix, "dead-node")  # a node that held two connections
        dead.bind(broker.redis)
        entries = [PresenceEntry("ann", "c-ann"), PresenceEntry("bob", "c-bob")]
        for entry in entries:
            await dead.connect(entry)
            await dead.join("lobby", entry, None)
        await dead.join("side", entries[0], None)
        # the survivor "ghost" claimed it (the node left the live set) and died at once
        await broker.redis.hset(dead.reaping_key, "dead-node", "ghost")
        assert await broker.presence.count("lobby") == 2

        reaped = await broker.presence.reap()
        assert reaped.dead == 1
        assert sorted(e.client_id for e in reaped.gone) == ["c-ann", "c-bob"]
        assert sorted((room, e.client_id) for room, e in reaped.left) == [
            ("lobby", "c-ann"), ("lobby", "c-bob"), ("side", "c-ann")]
        assert await broker.presence.count("lobby") == 0
        assert await broker.presence.count("side") == 0
        assert await broker.presence.clients_of("ann") == []
        assert await broker.redis.hgetall(dead.reaping_key) == {}
        assert (await broker.presence.reap()).dead == 0  # done: nothing to take over again
    finally:
        await broker.stop()
