"""Failures of a real cluster: a node killed with SIGKILL, and Redis itself restarted.

Nodes run with ``node_ttl=2`` (from the broker URL) so that a dead node is noticed in
seconds; the bound the library promises with the default TTL (10 s) is 30 s. The Redis
restart test runs its own ``redis-server`` on a free port, so the shared Redis of the
machine (and anything else using it) is never disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nodes import NodeProcess, bearer, eventually, fresh_nodes, node_env, start_all, stop_all
from pg_helpers import fresh_postgres
from redis.asyncio import Redis
from redis_helpers import REDIS_URL, PrivateRedis, need_redis, need_redis_server
from tcp_proxy import TcpProxy

from dialogue_fastapi.client import DialogueClient
from dialogue_fastapi.testing import WsProbe

NODE_TTL = 2.0
REAP_BOUND = 30.0  # what DESIGN.md promises for a crashed node's connections


def with_ttl(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}node_ttl={NODE_TTL:g}"


async def publish(http: httpx.AsyncClient, node: NodeProcess, room: str, n: int) -> httpx.Response:
    return await http.post(f"{node.api_url}/rooms/{room}/events", headers=bearer("publisher"),
                           json={"event": "tick", "data": {"n": n}})


async def publish_ok(http: httpx.AsyncClient, node: NodeProcess, room: str, n: int) -> int:
    response = await publish(http, node, room, n)
    assert response.status_code == 202, response.text
    seq: int = response.json()["seq"]
    return seq


class Seen:
    """Every event a Python client's room delivered, in delivery order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.resets = 0

    def event(self, envelope: dict[str, Any]) -> None:
        self.events.append(envelope)

    def reset(self, _: Any) -> None:
        self.resets += 1

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.events]

    async def count(self) -> int:
        return len(self.events)


async def watch(client: DialogueClient, room: str) -> Seen:
    seen = Seen()
    joined = await client.join(room)
    joined.on("*", seen.event)
    joined.on_reset(seen.reset)
    return seen


async def first_events(
    http: httpx.AsyncClient, watcher: DialogueClient, node: NodeProcess, room: str, count: int,
) -> tuple[Seen, str]:
    """Connect ``watcher`` to ``room``, publish events 1..count on ``node``, wait until the
    watcher has them all; its record and the room's epoch."""
    await watcher.connect()
    seen = await watch(watcher, room)
    for n in range(1, count + 1):
        await publish_ok(http, node, room, n)
    await eventually(seen.count, lambda k: k == count, what=f"the first {count} events")
    epoch: str = watcher.room(room).position["epoch"]  # type: ignore[union-attr]
    return seen, epoch


# --- a node killed -----------------------------------------------------------------------

@pytest.fixture
async def three_nodes(tmp_path: Path) -> AsyncIterator[list[NodeProcess]]:
    await need_redis()
    async with fresh_nodes("ABC", with_ttl(REDIS_URL), tmp_path, prefix="dfail") as nodes:
        yield nodes


async def test_a_killed_nodes_clients_move_to_a_survivor_and_its_presence_is_cleaned(
    three_nodes: list[NodeProcess],
) -> None:
    a, b, c = three_nodes
    room = "lobby"  # presence_events=True
    proxy = TcpProxy("127.0.0.1", c.port)  # the load balancer: victim's connections go to C
    await proxy.start()
    http = httpx.AsyncClient(timeout=10.0)
    observer = await WsProbe.open(a.ws_url("observer"))
    victim = DialogueClient(f"ws://127.0.0.1:{proxy.port}/dialogue/ws", token="victim",
                            backoff_initial=0.05, backoff_max=0.5)
    try:
        await observer.request("join", room=room)
        await victim.connect()
        seen = await watch(victim, room)
        old_client = (await observer.next("presence_join"))["client_id"]
        for n in range(1, 11):
            await publish_ok(http, b, room, n)
        await eventually(seen.count, lambda k: k == 10, what="the victim got the first 10")

        await c.kill()  # SIGKILL: no goodbye to Redis, the victim's socket just breaks
        killed_at = time.monotonic()
        proxy.target = ("127.0.0.1", a.port)  # the load balancer notices and fails over
        for n in range(11, 21):  # published while the victim is away
            await publish_ok(http, b, room, n)
        await eventually(seen.count, lambda k: k >= 20, timeout=15, what="the victim recovered")
        for n in range(21, 26):
            await publish_ok(http, b, room, n)
        await eventually(seen.count, lambda k: k >= 25, what="live events after the move")
        assert seen.seqs == list(range(1, 26)), "every event once, in order, across the move"
        assert [e["data"]["n"] for e in seen.events] == list(range(1, 26))
        assert seen.resets == 0

        async def members() -> list[str]:
            found = await http.get(f"{a.api_url}/rooms/{room}/presence", headers=bearer("x"))
            return [u["client_id"] for u in found.json()["users"]]

        await eventually(members, lambda m: old_client not in m, timeout=REAP_BOUND,
                         what="the dead node's connection left presence")
        took = time.monotonic() - killed_at
        assert took < NODE_TTL + NODE_TTL / 3 + 3, f"reaped {took:.1f}s after the kill"
        leave = await observer.next("presence_leave", timeout=5)
        assert (leave["user_id"], leave["client_id"]) == ("victim", old_client)
        present = await members()
        assert len(present) == 2 and old_client not in present  # observer + the victim's new one
        clients = (await http.get(f"{b.http_url}/test/clients/victim")).json()["clients"]
        assert len(clients) == 1 and clients[0] != old_client

        # the dead connection's hooks ran once in the cluster, on a survivor (the reaper)
        async def victim_runs() -> list[list[Any]]:
            runs = (await http.get(f"{b.http_url}/test/hooks")).json()["runs"]
            return [r for r in runs if r[1] == "victim"]

        runs = await eventually(victim_runs, lambda r: len(r) >= 2, what="the lost connection's hooks")
        await asyncio.sleep(NODE_TTL)  # time for a second run, were there one
        runs = await victim_runs()
        assert sorted((name, arg) for name, _, arg, _ in runs) == [
            ("on_disconnected", old_client), ("on_left", room)]
        assert {pid for *_, pid in runs} <= {a.pid, b.pid}  # a survivor ran them, not c
        assert len({pid for *_, pid in runs}) == 1
    finally:
        await victim.close()
        await observer.close()
        await http.aclose()
        await proxy.cut()


async def test_a_node_paused_longer_than_the_ttl_closes_the_connections_it_lost(
    three_nodes: list[NodeProcess],
) -> None:
    """C stops (SIGSTOP) for longer than the node TTL: a survivor reaps its connection and runs
    its hooks. When C resumes it must not write that connection back as if nothing happened:
    it closes it (1013), the client reconnects, joins again and recovers what it missed."""
    a, b, c = three_nodes
    room = "lobby"  # presence_events=True
    http = httpx.AsyncClient(timeout=10.0)
    observer = await WsProbe.open(a.ws_url("observer"))
    sleeper = DialogueClient(c.ws_url(), token="sleeper", backoff_initial=0.05, backoff_max=0.5)
    try:
        await observer.request("join", room=room)
        seen, _ = await first_events(http, sleeper, b, room, 5)
        old_client = (await observer.next("presence_join"))["client_id"]
        c.pause()
        try:
            leave = await observer.next("presence_leave", timeout=NODE_TTL * 2 + 3)
            assert (leave["user_id"], leave["client_id"]) == ("sleeper", old_client)
            for n in range(6, 11):  # published while C is silent
                await publish_ok(http, b, room, n)
        finally:
            c.resume()
        rejoin = await observer.next("presence_join", timeout=NODE_TTL * 2 + 5)
        assert rejoin["user_id"] == "sleeper" and rejoin["client_id"] != old_client
        assert sleeper.close_code == 1013
        await eventually(seen.count, lambda k: k >= 10, what="the sleeper recovered 6..10")
        assert seen.seqs == list(range(1, 11)) and seen.resets == 0

        async def members() -> list[str]:
            found = await http.get(f"{a.api_url}/rooms/{room}/presence", headers=bearer("x"))
            return sorted(u["client_id"] for u in found.json()["users"])

        present = await members()
        assert old_client not in present and rejoin["client_id"] in present and len(present) == 2
        # the old connection's hooks ran once in the cluster, by the reaper, not again by C
        await asyncio.sleep(NODE_TTL)
        runs = (await http.get(f"{b.http_url}/test/hooks")).json()["runs"]
        old_runs = [(name, arg, pid) for name, user, arg, pid in runs
                    if user == "sleeper" and (arg == old_client or name == "on_left")]
        assert sorted((name, arg) for name, arg, _ in old_runs) == [
            ("on_disconnected", old_client), ("on_left", room)]
        assert {pid for *_, pid in old_runs} <= {a.pid, b.pid}
    finally:
        c.resume()
        await sleeper.close()
        await observer.close()
        await http.aclose()


# --- Redis restarted ---------------------------------------------------------------------

@contextlib.asynccontextmanager
async def restartable_cluster(
    tmp_path: Path, settings: dict[str, str],
) -> AsyncIterator[tuple[PrivateRedis, list[NodeProcess], str]]:
    """Nodes A and B on a private redis-server (which can be restarted empty) with their
    history in a fresh PostgreSQL database; ``settings``: more environment for the nodes."""
    await need_redis()
    need_redis_server()

    redis = PrivateRedis(tmp_path / "redis.log")
    await redis.start()
    nodes: list[NodeProcess] = []
    try:
        async with fresh_postgres() as (db_url, table_prefix):
            env = node_env(with_ttl(redis.url), "drestart:", {
                "CLUSTER_DATABASE_URL": db_url, "CLUSTER_TABLE_PREFIX": table_prefix, **settings,
            })
            nodes = [NodeProcess(f"node{name}", env, tmp_path) for name in "AB"]
            try:
                await start_all(nodes)
                yield redis, nodes, table_prefix
            finally:
                await stop_all(nodes)  # before their tables are dropped
    finally:
        redis.kill()


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[tuple[PrivateRedis, list[NodeProcess], str]]:
    # acknowledged = stored: the test need not wait for the write-behind
    async with restartable_cluster(tmp_path, {"DIALOGUE_DURABLE": "true"}) as cluster:
        yield cluster


async def test_after_a_redis_restart_nodes_recover_and_positions_continue_from_the_store(
    restartable: tuple[PrivateRedis, list[NodeProcess], str],
) -> None:
    redis, (a, b), _ = restartable
    room = "cross"
    http = httpx.AsyncClient(timeout=10.0)
    watcher = DialogueClient(a.ws_url("watcher"), backoff_initial=0.05, backoff_max=0.5)
    try:
        seen, epoch = await first_events(http, watcher, b, room, 10)

        redis.kill()
        refused = await publish(http, b, room, 0)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "UNAVAILABLE"

        async def ready(node: NodeProcess) -> int:
            return (await http.get(node.api_url + "/ready")).status_code

        await eventually(lambda: ready(a), lambda s: s == 503, what="node A reports it is not ready")
        await redis.start()  # empty: it keeps nothing on disk
        for node in (a, b):
            await eventually(functools.partial(ready, node), lambda s: s == 200, timeout=15,
                             what=f"{node.name} ready again by itself")

        seqs = [await publish_ok(http, a, room, n) for n in range(11, 21)]
        assert seqs == list(range(11, 21)), "seq continues from the store, not from 1"
        await eventually(seen.count, lambda k: k >= 20, what="live events after the restart")
        assert seen.seqs == list(range(1, 21)) and seen.resets == 0
        assert watcher.room(room).position["epoch"] == epoch  # type: ignore[union-attr]

        # a client that was away resumes from seq 5 on the other node: no gap, no duplicate
        late = await WsProbe.open(b.ws_url("late"))
        try:
            joined = await late.request("join", room=room, since={"seq": 5, "epoch": epoch})
            assert joined["recovered"] is True
            assert [e["seq"] for e in joined["events"]] == list(range(6, 21))
            assert joined["position"] == {"seq": 20, "epoch": epoch}
            await publish_ok(http, b, room, 21)
            assert (await late.next("event"))["seq"] == 21
        finally:
            await late.close()

        # presence is written back by each node's next heartbeat (every node_ttl / 3)
        async def present() -> list[str]:
            found = await http.get(f"{b.api_url}/rooms/{room}/presence", headers=bearer("x"))
            return [u["user_id"] for u in found.json()["users"]]

        await eventually(present, lambda users: users == ["watcher"], timeout=NODE_TTL,
                         what="the watcher counted again after the restart")
    finally:
        await watcher.close()
        await http.aclose()


async def test_after_a_redis_restart_events_still_being_written_keep_their_seqs(tmp_path: Path) -> None:
    """Write-behind (not durable), one write every 2 s: node A acknowledges seq 11, Redis
    loses everything (FLUSHALL, as an empty restart) before A has stored it, and node B
    publishes next. B must not continue
    from the store's seq 10 (that would give 11 out twice): it reads the store again after
    its fence, once A's write is in, and continues at 12."""
    async with restartable_cluster(tmp_path, {"DIALOGUE_WRITE_INTERVAL": "2"}) as (redis, nodes, _):
        a, b = nodes
        room = "cross"
        async with httpx.AsyncClient(timeout=20.0) as http:
            for n in range(1, 11):
                await publish_ok(http, a, room, n)

            async def stored_seqs() -> list[int]:
                found = await http.get(f"{a.api_url}/rooms/{room}/history?limit=100",
                                       headers=bearer("reader"))
                return [e["seq"] for e in found.json()["events"]]

            await eventually(stored_seqs, lambda s: s == list(range(1, 11)), timeout=10,
                             what="the first 10 events in the store")
            assert await publish_ok(http, a, room, 11) == 11  # acknowledged; stored within 2 s
            async with Redis.from_url(redis.url) as raw:
                await raw.flushall()  # what an empty restart does to the data, at once
            got = await publish_ok(http, b, room, 12)
            assert got == 12, f"seq {got} given out; B's log:\n{b.tail()}\nA's log:\n{a.tail()}"
            await eventually(stored_seqs, lambda s: s == list(range(1, 13)), timeout=10,
                             what="12 events in the store")
            found = await http.get(f"{a.api_url}/rooms/{room}/history?limit=100", headers=bearer("r"))
            assert [e["data"]["n"] for e in found.json()["events"]] == list(range(1, 13))


async def test_after_a_redis_restart_without_persistence_clients_resync_to_a_new_epoch(
    tmp_path: Path,
) -> None:
    await need_redis()
    need_redis_server()
    redis = PrivateRedis(tmp_path / "redis.log")
    await redis.start()
    nodes = [NodeProcess(f"node{name}", node_env(with_ttl(redis.url), "dlost:"), tmp_path)
             for name in "AB"]
    http = httpx.AsyncClient(timeout=10.0)
    watcher = DialogueClient(nodes[0].ws_url("watcher"), backoff_initial=0.05, backoff_max=0.5)
    try:
        await start_all(nodes)
        b = nodes[1]
        room = "cross"
        seen, old_epoch = await first_events(http, watcher, b, room, 5)

        redis.kill()
        await redis.start()  # empty: the room's history and epoch are gone

        async def resynced() -> int:
            return seen.resets

        # A's subscriber comes back, sees a new epoch and closes the room's members with 1012;
        # the client rejoins with its old position and is told it cannot be recovered
        await publish_ok(http, b, room, 6)  # the first event of the new epoch: seq 1
        await eventually(resynced, lambda r: r == 1, timeout=15, what="the client was reset")
        new_epoch = watcher.room(room).position["epoch"]  # type: ignore[union-attr]
        assert new_epoch != old_epoch
        seq = await publish_ok(http, b, room, 7)
        await eventually(seen.count, lambda k: k >= 6, what="live events in the new epoch")
        assert seen.seqs[:5] == [1, 2, 3, 4, 5] and seen.seqs[-1] == seq
        assert seen.resets == 1
    finally:
        await watcher.close()
        await http.aclose()
        await stop_all(nodes)
        redis.kill()
