"""A client joining thousands of distinct ``doc:{n}`` instances, one after another, leaves
the server's memory where it started once ``idle_ttl`` has passed (the full 100,000 are in
``benchmarks/instances.py``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
from test_exit_signal import free_port, output_of, started

from dialogue_fastapi.testing import WsProbe

# the server of benchmarks/instances.py, with a short idle_ttl
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
WARM_UP, JOINS = 4_000, int(os.environ.get("DIALOGUE_TEST_INSTANCE_JOINS", "6000"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def settled(http: httpx.AsyncClient, evicted: int, timeout: float = 20.0) -> None:
    """Wait until every instance used so far has been evicted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = (await http.get("/instances")).json()
        if state["held"] == 0 and state["evicted"] >= evicted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"instances not evicted in {timeout}s: {state}")


async def join_and_leave(probe: WsProbe, first: int, count: int) -> None:
    for n in range(first, first + count):
        await probe.request("join", room=f"doc:{n}")
        await probe.request("leave", room=f"doc:{n}")


async def test_distinct_instances_leave_no_memory_behind_once_idle() -> None:
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "instances_server:app", "--app-dir", str(BENCHMARKS),
         "--port", str(port), "--ws", "websockets-sansio", "--log-level", "warning"],
        env={**os.environ, "BENCH_IDLE_TTL": "0.2"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await started(port, proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            probe = await WsProbe.open(f"ws://127.0.0.1:{port}/ws")
            try:
                await join_and_leave(probe, 0, WARM_UP)
                await settled(http, WARM_UP)
                before = rss_kib(proc.pid)
                await join_and_leave(probe, WARM_UP, JOINS)
                await settled(http, WARM_UP + JOINS)
                after = rss_kib(proc.pid)
            finally:
                await probe.close()
        assert after <= before * 1.10, f"RSS grew from {before} KiB to {after} KiB"
    finally:
        output_of(proc)
