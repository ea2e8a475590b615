"""Several worker processes behind one port: ``uvicorn --workers 2`` and gunicorn with uvicorn workers.

The workers share the listening socket; each is a node of its own on the
shared Redis. Which worker holds a WebSocket is read from Redis, where the
cluster app's ``on_connected`` hook records its pid for each client id.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from helpers import need_module
from nodes import Cluster, NodeProcess, eventually, node_env
from redis_helpers import REDIS_URL, delete_prefix, need_redis, redis_client

from dialogue_fastapi.testing import WsProbe

WORKERS = 2


@pytest.fixture(params=["uvicorn", "gunicorn"])
async def workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    """One server with two worker processes on one port, started and ready on both workers."""
    await need_redis()
    server = request.param
    if server == "gunicorn":
        need_module("gunicorn", "gunicorn")
        need_module("uvicorn_worker", "uvicorn-worker")
    prefix = f"dworkers{secrets.token_hex(4)}:"
    node = NodeProcess(f"{server}-{WORKERS}-workers", node_env(REDIS_URL, prefix),
                       tmp_path_factory.mktemp(server), server=server, workers=WORKERS)
    cluster = Cluster(prefix, REDIS_URL, [node])
    try:
        await node.start()
        await eventually(lambda: worker_pids(node), lambda pids: len(pids) == WORKERS, timeout=20,
                         what=f"{WORKERS} workers answering on port {node.port}")
        yield cluster
        cluster.check_running()
    finally:
        await cluster.close_clients()
        await node.stop()
        await delete_prefix(prefix)


async def worker_pids(node: NodeProcess, requests: int = 20) -> set[int]:
    """Pids that answered ``requests`` requests, each on a connection of its own."""
    pids: set[int] = set()
    for _ in range(requests):
        async with httpx.AsyncClient(timeout=5.0) as client:
            try:
                response = await client.get(node.http_url + "/test/node")
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                pids.add(int(response.json()["pid"]))
    return pids


async def test_workers_on_one_port_deliver_each_others_events(workers: Cluster) -> None:
    node = workers[0]
    room = f"{node.server}-workers"
    by_pid: dict[int, list[WsProbe]] = {}
    async with redis_client() as redis:
        for i in range(100):  # until each worker holds at least two connections
            p = await workers.probe(node, f"user{i}")
            await p.request("ping")  # on_connected has run before the first command is read
            owner = await redis.hget(workers.key("connections"), p.hello["client_id"])
            assert owner is not None, f"no owner recorded for {p.hello['client_id']}"
            by_pid.setdefault(int(owner.split()[0]), []).append(p)
            if len(by_pid) == WORKERS and min(len(c) for c in by_pid.values()) >= 2:
                break
    sizes = {pid: len(c) for pid, c in by_pid.items()}
    assert len(by_pid) == WORKERS and min(sizes.values()) >= 2, f"connections by worker: {sizes}"
    everyone = [p for clients in by_pid.values() for p in clients]
    for p in everyone:
        await p.request("join", room=room)

    # a publish on each worker reaches every member on both workers, in one order
    senders = [clients[0] for clients in by_pid.values()]
    for seq, sender in enumerate(senders, start=1):
        ack = await sender.request("publish", room=room, event="hello",
                                   data={"client_id": sender.hello["client_id"]})
        assert ack["seq"] == seq
    for p in everyone:
        events = await p.events(len(senders))
        assert [(e["seq"], e["from"]) for e in events] == [
            (seq, s.hello["user_id"]) for seq, s in enumerate(senders, start=1)]
    for p in everyone:
        assert await p.nothing("event", wait=0.05)

    # presence counts every member, whichever worker answers the request
    for _ in range(4):
        found = await workers.presence(node, room)
        assert found["count"] == len(everyone)
