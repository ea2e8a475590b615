"""The local Redis Cluster harness, proved with plain redis-py, and what Redis 7.0 does.

These pin the server behaviours the ``redis+cluster://`` broker is built on:

* a SSUBSCRIBE to a node that does not own the channel's slot is answered
  ``-MOVED <slot> <host>:<port>``: redis-py's ``PubSub.ssubscribe()`` only sends it, the
  following ``get_message()`` raises ``redis.exceptions.MovedError``, and the channel stays
  in ``PubSub.shard_channels`` (a reconnect would send it to the same wrong node);
* when the slot moves away, every subscriber of its channels on the old owner (and on the
  old owner's replica) gets a ``sunsubscribe`` push, returned by ``get_message()`` as
  ``{"type": "sunsubscribe", "pattern": None, "channel": <channel>, "data": 0}``; redis-py
  keeps the channel in ``shard_channels`` (it only forgets unsubscribes it asked for);
* SPUBLISH works inside a script when the channel's slot is served by the node running
  it (the same slot as the script's keys or not); a channel served by another node fails
  the script with "Script attempted to access a non local key in a cluster node";
* replicas accept SSUBSCRIBE and deliver the shard's messages, but SPUBLISH on the master
  counts only the master's own subscribers;
* a subscriber on a master that is SIGKILLed gets no message: its ``get_message()`` raises
  ``redis.exceptions.ConnectionError`` (redis-py's reconnect attempts fail), until the node
  is back, when redis-py reconnects and sends SSUBSCRIBE again by itself: the restarted
  node is now a replica of the promoted one and delivers the shard's messages.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, ResponseError
from redis_cluster import HOST, Connection, LocalRedisCluster, cluster_url, flush_prefix


@pytest.fixture
async def client(redis_cluster: LocalRedisCluster) -> AsyncIterator[RedisCluster]:
    rc = RedisCluster(host=HOST, port=redis_cluster.ports[0])
    try:
        yield rc
    finally:
        await rc.aclose()


async def subscriber(port: int, channel: str) -> Any:
    """A redis-py PubSub on the node on ``port``, SSUBSCRIBEd to ``channel`` (confirmed)."""
    pubsub = Redis(host=HOST, port=port).pubsub()
    await pubsub.ssubscribe(channel)
    assert await pubsub.get_message(timeout=5) == {
        "type": "ssubscribe", "pattern": None, "channel": channel.encode(), "data": 1}
    return pubsub


async def close(*pubsubs: Any) -> None:
    for pubsub in pubsubs:
        await pubsub.aclose()
        await pubsub.connection_pool.disconnect()


async def key_on(cluster: LocalRedisCluster, prefix: str, port: int, not_slot: int = -1) -> str:
    """A key with ``prefix`` that the master on ``port`` serves (not in slot ``not_slot``)."""
    for i in range(10000):
        key = f"{prefix}{i}"
        slot = await cluster.slot_of(key)
        if slot != not_slot and await cluster.owner_of(slot) == port:
            return key
    raise AssertionError(f"no key found on {port}")


def smessage(channel: str, data: bytes) -> dict[str, Any]:
    return {"type": "smessage", "pattern": None, "channel": channel.encode(), "data": data}


async def test_url_and_keys_on_all_masters(
    redis_cluster: LocalRedisCluster, client: RedisCluster, cluster_prefix: str
) -> None:
    url = cluster_url(redis_cluster)
    assert url == "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in redis_cluster.ports[:3])
    masters = await redis_cluster.masters()
    assert len(masters) == 3
    assert sum(b - a + 1 for m in masters for a, b in m.slots) == 16384
    for master in masters:
        replica = await redis_cluster.replica_of(master)
        assert replica not in {m.port for m in masters}

    for i in range(60):
        await client.set(f"{cluster_prefix}{i}", i)
    counts = []
    for master in masters:
        direct = Redis(host=HOST, port=master.port)
        counts.append(len([k async for k in direct.scan_iter(match=f"{cluster_prefix}*")]))
        await direct.aclose()
    assert sum(counts) == 60
    assert all(counts), counts
    assert await flush_prefix(redis_cluster, cluster_prefix) == 60


async def test_sharded_pubsub(
    redis_cluster: LocalRedisCluster, client: RedisCluster, cluster_prefix: str
) -> None:
    channel = f"{cluster_prefix}chan"
    owner = await redis_cluster.owner_of(await redis_cluster.slot_of(channel))
    on_owner = await subscriber(owner, channel)
    on_replica = await subscriber(await redis_cluster.replica_of(owner), channel)
    other = next(m.port for m in await redis_cluster.masters() if m.port != owner)
    wrong = Redis(host=HOST, port=other).pubsub()
    try:
        assert await client.spublish(channel, "hello") == 1  # the replica's subscriber is not counted
        assert await on_owner.get_message(timeout=5) == smessage(channel, b"hello")
        assert await on_replica.get_message(timeout=5) == smessage(channel, b"hello")

        await wrong.ssubscribe(channel)  # only sends: the MOVED reply is read as the next message
        with pytest.raises(MovedError) as moved:
            await wrong.get_message(timeout=5)
        assert (moved.value.slot_id, moved.value.port) == (await redis_cluster.slot_of(channel), owner)
        assert channel.encode() in wrong.shard_channels
    finally:
        await close(on_owner, on_replica, wrong)


async def test_spublish_in_scripts(
    redis_cluster: LocalRedisCluster, client: RedisCluster, cluster_prefix: str
) -> None:
    channel = f"{cluster_prefix}{{room}}"
    slot = await redis_cluster.slot_of(channel)
    owner = await redis_cluster.owner_of(slot)
    on_owner = await subscriber(owner, channel)
    script = "redis.call('SET', KEYS[1], '1'); return redis.call('SPUBLISH', ARGV[1], ARGV[2])"
    try:
        same_slot = f"{cluster_prefix}{{room}}:state"
        assert await client.eval(script, 1, same_slot, channel, "same slot") == 1
        assert await on_owner.get_message(timeout=5) == smessage(channel, b"same slot")

        other_slot = await key_on(redis_cluster, cluster_prefix, owner, not_slot=slot)
        assert await client.eval(script, 1, other_slot, channel, "same node") == 1
        assert await on_owner.get_message(timeout=5) == smessage(channel, b"same node")

        other_port = next(m.port for m in await redis_cluster.masters() if m.port != owner)
        other_node = await key_on(redis_cluster, cluster_prefix, other_port)
        with pytest.raises(ResponseError, match="attempted to access a non local key in a cluster node"):
            await client.eval(script, 1, other_node, channel, "other node")
    finally:
        await close(on_owner)


async def test_kill_master_promotes_its_replica(redis_cluster_private: LocalRedisCluster) -> None:
    cluster = redis_cluster_private
    key = channel = "dtest:kill"
    master = await cluster.owner_of(await cluster.slot_of(key))
    replica = await cluster.replica_of(master)
    conn = await Connection.open(master)
    try:
        assert await conn.call("SET", key, "before") == "OK"
        assert await conn.call("WAIT", 1, 1000) == 1
    finally:
        await conn.close()
    pubsub = await subscriber(master, channel)
    waiting = asyncio.create_task(pubsub.get_message(timeout=None))
    await asyncio.sleep(0.1)
    rc = RedisCluster(host=HOST, port=replica)
    try:
        assert await cluster.kill_master(master) == replica
        promoted = next(m for m in await cluster.masters() if m.port == replica)
        assert master not in {m.port for m in await cluster.masters()}
        assert promoted.slots and await cluster.owner_of(await cluster.slot_of(key)) == replica
        assert await rc.get(key) == b"before"
        with pytest.raises(RedisConnectionError, match="Connect call failed"):
            await waiting  # no message: raised once redis-py's reconnect attempts failed (~4 s)

        await cluster.restart(master)  # back as the replica of its old replica
        assert await cluster.replica_of(replica) == master
        # redis-py reconnects and subscribes again, now on a replica, which delivers
        assert (await pubsub.get_message(timeout=5))["type"] == "ssubscribe"
        await rc.spublish(channel, "after")
        assert await pubsub.get_message(timeout=5) == smessage(channel, b"after")
    finally:
        waiting.cancel()
        await close(pubsub)
        await rc.aclose()


async def test_migrate_slot_moves_keys_and_unsubscribes(redis_cluster_private: LocalRedisCluster) -> None:
    cluster = redis_cluster_private
    tag = f"{{m{secrets.token_hex(2)}}}"
    channel = f"dtest:{tag}chan"
    slot = await cluster.slot_of(channel)
    source = await cluster.owner_of(slot)
    target = next(m.port for m in await cluster.masters() if m.port != source)
    rc = RedisCluster(host=HOST, port=cluster.ports[0])
    on_source = await subscriber(source, channel)
    on_replica = await subscriber(await cluster.replica_of(source), channel)
    try:
        for i in range(250):  # more than one MIGRATE batch
            await rc.set(f"dtest:{tag}{i}", i)
        await cluster.migrate_slot(slot, target)

        assert await cluster.owner_of(slot) == target
        assert await rc.get(f"dtest:{tag}7") == b"7"
        conn = await Connection.open(target)
        assert await conn.call("CLUSTER", "COUNTKEYSINSLOT", slot) == 250
        await conn.close()
        sunsubscribe = {"type": "sunsubscribe", "pattern": None, "channel": channel.encode(), "data": 0}
        assert await on_source.get_message(timeout=5) == sunsubscribe
        assert await on_replica.get_message(timeout=5) == sunsubscribe
        assert channel.encode() in on_source.shard_channels  # redis-py did not ask: it still lists it
        await on_source.ssubscribe(channel)
        with pytest.raises(MovedError) as moved:
            await on_source.get_message(timeout=5)
        assert moved.value.port == target
    finally:
        await close(on_source, on_replica)
        await rc.aclose()
