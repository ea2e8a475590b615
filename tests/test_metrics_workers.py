"""Metrics under several workers (real uvicorn ``--workers 2`` and gunicorn ``-w 2``):
cluster-correct totals, the live gauges of a worker killed with SIGKILL gone, and the
multiprocess directory wiped on start (docs/metrics.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import need_module
from metrics_helpers import Samples, scrape_until, value
from test_exit_signal import free_port, output_of, started

from dialogue_fastapi.testing import WsProbe

TESTS = Path(__file__).resolve().parent


def run_workers(server: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    if server == "gunicorn":
        need_module("gunicorn", "gunicorn")
        need_module("uvicorn_worker", "uvicorn-worker")
        command = ["gunicorn", "metrics_app:app", "--chdir", str(TESTS), "--workers", "2",
                   "--worker-class", "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{port}"]
    else:
        command = ["uvicorn", "metrics_app:app", "--app-dir", str(TESTS), "--port", str(port),
                   "--workers", "2", "--ws", "websockets-sansio"]
    return subprocess.Popen(
        [sys.executable, "-m", *command, "--log-level", "warning"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


async def clients_on_both_workers(port: int) -> dict[int, list[WsProbe]]:
    """Two connections on each worker. The kernel lets either worker accept, and often the
    same one: ``GET /hold`` keeps the worker that takes it busy while two more connect."""
    by_worker: dict[int, list[WsProbe]] = {}

    async def connect() -> int:
        client = await WsProbe.open(f"ws://127.0.0.1:{port}/ws")
        pid = int(client.hello["user_id"][1:])
        by_worker.setdefault(pid, []).append(client)
        return pid

    for _ in range(2):
        await connect()
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(20):
            if len(by_worker) == 2 and min(map(len, by_worker.values())) >= 2:
                return by_worker
            async with http.stream("GET", f"http://127.0.0.1:{port}/hold?seconds=1") as held:
                busy = int(await anext(held.aiter_lines()))
                for _ in range(2):
                    assert await connect() != busy, "a worker with a blocked loop accepted"
    raise AssertionError(f"connections reached one worker only: {list(by_worker)}")


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
async def test_two_workers_sum_and_a_killed_worker_leaves_the_gauges(tmp_path: Path, server: str) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_4000000.db").write_bytes(b"stale from an earlier run")  # wiped on start
    port = free_port()
    proc = run_workers(server, port, directory)
    url = f"http://127.0.0.1:{port}/metrics"
    opened: list[WsProbe] = []
    try:
        await started(port, proc, timeout=30)
        by_worker = await clients_on_both_workers(port)
        opened = [c for clients in by_worker.values() for c in clients]
        for client in opened:
            await client.request("join", room="chat")
        for clients in by_worker.values():  # 5 events published on each worker
            for i in range(5):
                await clients[0].request("publish", room="chat", event="message", data={"i": i})
        count = len(opened)

        def summed(samples: Samples) -> bool:
            return (value(samples, "dialogue_connections_active") == count
                    and value(samples, "dialogue_events_total", room="chat", event="message") == 10
                    and value(samples, "dialogue_rooms_size", room="chat") == count)

        samples = await scrape_until(url, summed)
        assert value(samples, "dialogue_connections_active") == count
        assert value(samples, "dialogue_connections_total") == count
        assert value(samples, "dialogue_events_total", room="chat", event="message") == 10
        assert value(samples, "dialogue_rooms_size", room="chat") == count
        assert not (directory / "counter_4000000.db").exists()

        victim, lost = max(by_worker.items(), key=lambda item: len(item[1]))
        os.kill(victim, signal.SIGKILL)
        left = count - len(lost)

        def buried(samples: Samples) -> bool:
            return (value(samples, "dialogue_connections_active") == left
                    and value(samples, "dialogue_rooms_size", room="chat") == left)

        samples = await scrape_until(url, buried, timeout=15)
        assert value(samples, "dialogue_connections_active") == left
        assert value(samples, "dialogue_rooms_size", room="chat") == left
        # counters of the dead worker still count: totals never go back
        assert value(samples, "dialogue_connections_total") == count
        assert value(samples, "dialogue_events_total", room="chat", event="message") == 10
    finally:
        for client in opened:
            client.ws.transport.abort()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        finally:
            print(output_of(proc))
