"""Several Redis broker nodes in one process: routing to a user's nodes, liveness and
reaping, presence written back after Redis lost it, positions restored from a store,
and a room whose history Redis lost. (Real server processes: tests/cluster/.)"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from redis_helpers import REDIS_URL, delete_prefix, need_redis, redis_client
from tcp_proxy import TcpProxy

from dialogue_fastapi.brokers.base import StoredRooms
from dialogue_fastapi.brokers.redis import RedisBroker
from dialogue_fastapi.brokers.redis_options import split_options
from dialogue_fastapi.core.types import EventMessage, Position, PresenceEntry
from dialogue_fastapi.testing.broker_contract import RecordingSink


def msg(room: str, n: int) -> EventMessage:
    return EventMessage(room=room, event="e", data={"n": n}, from_="u")


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)
    assert await check(), what


@asynccontextmanager
async def nodes(count: int, **options: Any) -> AsyncIterator[list[tuple[RedisBroker, RecordingSink]]]:
    """``count`` started brokers sharing one fresh prefix (stopped and cleaned afterwards)."""
    await need_redis()
    prefix = f"dtest{secrets.token_hex(4)}:"
    started: list[tuple[RedisBroker, RecordingSink]] = []
    try:
        async with AsyncExitStack() as stack:
            for _ in range(count):
                broker = RedisBroker(REDIS_URL, prefix=prefix, **options)
                sink = RecordingSink()
                await broker.start(sink.on_event, sink.on_control)
                stack.push_async_callback(broker.stop)
                started.append((broker, sink))
            yield started
    finally:
        await delete_prefix(prefix)


async def crash(broker: RedisBroker) -> None:
    """Stop a node the way SIGKILL would: no goodbye to Redis (no retire)."""
    liveness, broker._liveness = broker._liveness, None
    assert liveness is not None
    await liveness.stop()
    await broker.stop()


def test_broker_url_options_are_ours_and_the_rest_stay_for_redis() -> None:
    broker = RedisBroker("redis://127.0.0.1:6379/3?prefix=app1:&node_ttl=4&health_check_interval=2")
    assert (broker.prefix, broker.node_ttl) == ("app1:", 4.0)
    assert broker.url == "redis://127.0.0.1:6379/3?health_check_interval=2"
    assert split_options("unix:///run/redis.sock?prefix=a:") == ("unix:///run/redis.sock", {"prefix": "a:"})
    for bad in ("redis://h/0?node_ttl=soon", "redis://h/0?node_ttl=0"):
        try:
            split_options(bad)
        except ValueError as exc:
            assert "node_ttl" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


async def test_user_frames_reach_only_the_nodes_holding_the_user() -> None:
    async with nodes(3) as cluster:
        (a, sink_a), (b, sink_b), (c, sink_c) = cluster
        await a.presence.connect(PresenceEntry("alice", "c-a1"))
        await a.presence.connect(PresenceEntry("alice", "c-a2"))
        await b.presence.connect(PresenceEntry("bob", "c-b1"))
        assert await c.presence.clients_of("alice") == ["c-a1", "c-a2"]
        await c.control({"type": "direct", "user_id": "alice", "event": "x", "data": 1,
                         "from": "server", "ts": 1})
        await c.control({"type": "direct", "user_id": "bob", "event": "y", "data": 2,
                         "from": "server", "ts": 1})
        await c.control({"type": "disconnect_user", "client_id": "c-b1", "user_id": "bob"})
        await until(lambda: _has(sink_b, 2), 5, "bob's node got both frames")
        await until(lambda: _has(sink_a, 1), 5, "alice's node got hers")
        await asyncio.sleep(0.2)  # anything misrouted would have arrived by now
        assert [f["event"] for f in sink_a.controls] == ["x"]  # once, though alice has 2 clients
        assert [f.get("event", f["type"]) for f in sink_b.controls] == ["y", "disconnect_user"]
        # the sending node applies its own frames itself; none came back to it through Redis
        assert len(sink_c.controls) == 3
        await a.presence.disconnect(PresenceEntry("alice", "c-a1"))
        await a.presence.disconnect(PresenceEntry("alice", "c-a2"))
        sink_a.controls.clear()
        await c.control({"type": "direct", "user_id": "alice", "event": "z", "data": 3,
                         "from": "server", "ts": 1})
        await asyncio.sleep(0.2)
        assert sink_a.controls == []


async def _has(sink: RecordingSink, count: int) -> bool:
    return len(sink.controls) >= count


async def test_a_dead_nodes_connections_leave_presence_within_the_ttl() -> None:
    async with nodes(2, node_ttl=0.6) as cluster:
        (a, _), (b, sink_b) = cluster
        for n in range(3):
            entry = PresenceEntry(f"user{n}", f"dead-{n}")
            await a.presence.connect(entry)
            assert await a.presence.join("lobby", entry, None)
        await a.presence.connect(PresenceEntry("user9", "dead-roomless"))  # in no room
        survivor = PresenceEntry("bob", "alive-1")
        await b.presence.connect(survivor)
        await b.presence.join("lobby", survivor, 10)
        assert await b.presence.count("lobby") == 4
        loop = asyncio.get_running_loop()
        crashed_at = loop.time()
        await crash(a)

        async def only_bob_left() -> bool:
            return await b.presence.count("lobby") == 1

        await until(only_bob_left, 5, "the dead node's connections were reaped")
        took = loop.time() - crashed_at
        assert took <= 0.6 + 0.2 + 1.0, f"reaped after {took:.2f}s with a 0.6s TTL"
        assert [m.client_id for m in await b.presence.members("lobby")] == ["alive-1"]
        assert await b.presence.clients_of("user0") == []
        lost = [f for f in sink_b.controls if f["type"] == "node_lost"]
        assert len(lost) == 1
        assert sorted(lost[0]["left"]) == [["lobby", f"user{n}", f"dead-{n}"] for n in range(3)]
        # the reaping node alone is told who disconnected, to run their hooks once
        here = [f for f in sink_b.controls if f["type"] == "connections_lost"]
        assert len(here) == 1 and sorted(here[0]["left"]) == sorted(lost[0]["left"])
        assert sorted(here[0]["gone"]) == [*[[f"user{n}", f"dead-{n}"] for n in range(3)],
                                           ["user9", "dead-roomless"]]
        async with redis_client() as raw:
            assert not await raw.sismember(f"{b.prefix}nodes", a.node_id)
            assert await raw.hget(f"{b.prefix}where", "dead-0") is None


async def test_a_node_reaped_while_alive_closes_what_was_reaped_and_writes_back_the_rest() -> None:
    """A node unreachable longer than the TTL (stopped, cut off) is reaped by a survivor, which
    runs its connections' hooks. When its heartbeat gets through again it is told which of its
    connections were reaped: those are closed (not written back: they reconnect and join
    through max_size and the hooks again); a connection opened since is written back."""
    async with nodes(2, node_ttl=0.6) as cluster:
        (a, sink_a), (b, _) = cluster
        old = PresenceEntry("uma", "was-reaped")
        await a.presence.connect(old)
        assert await a.presence.join("lobby", old, 2)
        liveness = a._liveness  # runtime internals: stop only the heartbeat, as a pause would
        assert liveness is not None
        await liveness.stop()

        async def reaped() -> bool:
            return await b.presence.count("lobby") == 0

        await until(reaped, 5, "the silent node's connection was reaped")
        newer = PresenceEntry("vic", "since-reap")  # opened after the reap, before the beat
        await a.presence.connect(newer)
        assert await a.presence.join("lobby", newer, 2)
        filler = PresenceEntry("wes", "on-b")  # the room fills up meanwhile
        await b.presence.connect(filler)
        assert await b.presence.join("lobby", filler, 2)

        await liveness.tick()  # the heartbeat gets through again
        evicted = [f for f in sink_a.controls if f["type"] == "connections_evicted"]
        assert evicted == [{"type": "connections_evicted", "clients": ["was-reaped"]}]
        members = {m.client_id for m in await b.presence.members("lobby")}
        assert members == {"on-b", "since-reap"}, "the reaped connection was written back"
        await liveness.tick()  # told once: the next beat evicts nothing more
        assert len([f for f in sink_a.controls if f["type"] == "connections_evicted"]) == 1


async def test_a_node_that_stops_cleanly_leaves_nothing_behind() -> None:
    async with nodes(2) as cluster:
        (a, _), (b, _) = cluster
        entry = PresenceEntry("carol", "clean-1")
        await a.presence.connect(entry)
        await a.presence.join("lobby", entry, None)
        await a.stop()
        assert await b.presence.count("lobby") == 0
        assert await b.presence.clients_of("carol") == []
        async with redis_client() as raw:
            assert await raw.smembers(f"{b.prefix}nodes") == {b.node_id.encode()}


async def test_presence_is_written_back_when_redis_lost_it() -> None:
    async with nodes(1, node_ttl=0.3) as cluster:
        (a, _), = cluster
        entry = PresenceEntry("dave", "back-1")
        await a.presence.connect(entry)
        await a.presence.join("lobby", entry, 5)
        await a.presence.join("other", entry, None)
        await delete_prefix(a.prefix)  # what a Redis restart does to us
        assert await a.presence.count("lobby") == 0

        async def back() -> bool:
            return (await a.presence.count("lobby"), await a.presence.count("other")) == (1, 1)

        await until(back, 3, "presence written back by the heartbeat")
        assert await a.presence.clients_of("dave") == ["back-1"]
        await a.presence.leave("other", "back-1")
        await delete_prefix(a.prefix)
        await until(back_in_lobby_only(a), 3, "the room it left stays left")


def back_in_lobby_only(a: RedisBroker) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await a.presence.count("lobby"), await a.presence.count("other")) == (1, 0)
    return check


async def no_events(room: str, after: int, limit: int) -> list[EventMessage]:
    return []


async def test_positions_are_restored_from_the_store_when_redis_has_none() -> None:
    stored = {"kept": Position(41, "stored-epoch")}
    asked: list[str] = []

    async def loader(room: str) -> Position | None:
        asked.append(room)
        return stored.get(room)

    async with nodes(1) as cluster:
        (a, _), = cluster
        a.use_store(StoredRooms(loader, no_events))
        published = await a.publish(msg("kept", 1), 100)
        assert published.message.seq == 42
        assert await a.position("kept") == Position(42, "stored-epoch")
        fresh = await a.publish(msg("new", 1), 100)
        assert fresh.message.seq == 1
        assert asked == ["kept", "new"]  # once per room: afterwards Redis has the epoch
        await delete_prefix(a.prefix)  # Redis restarted
        assert (await a.position("kept")) == Position(41, "stored-epoch")
        assert (await a.publish(msg("kept", 2), 100)).message.seq == 42


async def test_a_room_whose_history_redis_lost_is_reset_on_the_node() -> None:
    async with nodes(1) as cluster:
        (a, sink), = cluster
        await a.subscribe("gone")
        await a.publish(msg("gone", 1), 100)
        await sink.wait_events(1)
        await delete_prefix(a.prefix)  # Redis lost everything, then the connection drops
        async with redis_client() as raw:
            ours = [c["id"] for c in await raw.client_list(_type="pubsub")
                    if c.get("name") == f"dialogue-sub-{a.node_id}"]
            await raw.execute_command("CLIENT", "KILL", "ID", ours[0])

        async def reset() -> bool:
            return any(f["type"] == "room_reset" for f in sink.controls)

        await until(reset, 5, "the node learnt that the room was lost")
        assert [f for f in sink.controls if f["type"] == "room_reset"] == [
            {"type": "room_reset", "room": "gone"}]
        await a.publish(msg("gone", 2), 100)  # the new epoch's seq 1 is delivered, not dropped
        events = await sink.wait_events(2)
        assert [(m.seq, m.data["n"]) for m in events] == [(1, 1), (1, 2)]


async def test_events_that_left_the_stream_while_the_subscriber_was_away_come_from_the_store() -> None:
    stored: list[EventMessage] = []

    async def read_after(room: str, after: int, limit: int) -> list[EventMessage]:
        return [m for m in stored if m.room == room and m.seq > after][:limit]

    async def no_position(room: str) -> Position | None:
        return None

    async with nodes(1) as cluster:
        (a, sink), = cluster
        a.use_store(StoredRooms(no_position, read_after))
        await a.subscribe("far")
        stored.append((await a.publish(msg("far", 1), 3)).message)
        await sink.wait_events(1)
        async with redis_client() as raw:
            ours = [c["id"] for c in await raw.client_list(_type="pubsub")
                    if c.get("name") == f"dialogue-sub-{a.node_id}"]
            await raw.execute_command("CLIENT", "KILL", "ID", ours[0])
            for n in range(2, 9):  # the stream keeps 3: 6, 7, 8
                stored.append((await a.publish(msg("far", n), 3)).message)
        events = await sink.wait_events(8)
        await asyncio.sleep(0.2)
        assert [m.seq for m in events] == list(range(1, 9))
        assert [m.data["n"] for m in events] == list(range(1, 9))


async def test_a_burst_larger_than_the_pool_waits_for_connections_instead_of_failing() -> None:
    async with nodes(1, max_connections=4) as cluster:
        (a, _), = cluster
        entries = [PresenceEntry(f"u{n}", f"burst-{n}") for n in range(300)]
        await asyncio.gather(*(a.presence.connect(e) for e in entries))
        await asyncio.gather(*(a.presence.join("big", e, None) for e in entries))
        assert await a.presence.count("big") == 300
        published = await asyncio.gather(*(a.publish(msg("big", n), 1000) for n in range(300)))
        assert sorted(p.message.seq for p in published) == list(range(1, 301))
        await asyncio.gather(*(a.presence.disconnect(e) for e in entries))  # all leaving at once
        assert await a.presence.count("big") == 0


async def test_an_outage_longer_than_the_ttl_reaps_no_live_node() -> None:
    """Redis unreachable for every node at once (here: a proxy cut for 3 TTLs; in production
    a failover or a restart that keeps the data) lets every liveness key expire. When Redis
    is back, the first node to beat must not take the others for dead: it sweeps only a TTL
    after its own beats came back, by when every live node has beaten again. Nobody's
    connections are reaped, nobody is evicted (1013), nobody leaves presence."""
    await need_redis()
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    db = REDIS_URL.rsplit("/", 1)[1]
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    prefix = f"dtest{secrets.token_hex(4)}:"
    ttl = 0.6
    started: list[tuple[RedisBroker, RecordingSink]] = []
    try:
        for _ in range(2):
            broker, sink = RedisBroker(f"redis://127.0.0.1:{proxy.port}/{db}", prefix=prefix,
                                       node_ttl=ttl, retries=0, connect_wait=1), RecordingSink()
            await broker.start(sink.on_event, sink.on_control)
            started.append((broker, sink))
        (a, sink_a), (b, sink_b) = started
        for broker, name in ((a, "on-a"), (b, "on-b")):
            entry = PresenceEntry(name, name)
            await broker.presence.connect(entry)
            assert await broker.presence.join("lobby", entry, None)

        await proxy.cut()
        async with redis_client() as raw:
            async def expired() -> bool:
                return not await raw.exists(a.presence.alive_key, b.presence.alive_key)

            await until(expired, 5, "both liveness keys expired during the outage")
        await proxy.start()  # Redis is back, on the same port

        async def both_registered() -> bool:
            async with redis_client() as raw:
                return bool(await raw.exists(a.presence.alive_key)
                            and await raw.exists(b.presence.alive_key))

        await until(both_registered, 5, "both nodes beat again")
        await asyncio.sleep(2 * ttl)  # two more TTLs of beats and sweeps: nothing may happen
        assert await b.presence.count("lobby") == 2
        for sink in (sink_a, sink_b):
            kinds = [f["type"] for f in sink.controls]
            assert "connections_evicted" not in kinds and "node_lost" not in kinds, kinds
    finally:
        for broker, _ in started:
            await broker.stop()
        await proxy.cut()
        await delete_prefix(prefix)
