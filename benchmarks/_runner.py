"""One repetition against one server: idle memory on a fresh server, then fan-out per N."""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _client import publisher, subscribers
from _cpu import ForeignLoad
from _phases import Latency, Throughput, idle_rss, latency, throughput
from _servers import REPO_DIR, CpuMeter, ServerProcess, running_server


@dataclass(frozen=True)
class Pinning:
    server: int | None  # None: not pinned (fewer than 2 CPUs)
    client: int | None

    def own(self, server: CpuMeter) -> dict[int, float]:
        """CPU seconds of the benchmark's processes by the CPU they are pinned to."""
        if self.server is None or self.client is None:
            return {}
        return {self.server: server.cpu_seconds(), self.client: time.process_time()}


def rate_for(args: argparse.Namespace, n: int) -> float:
    return float(args.rates.get(n, 30_000 / n))


async def measure_idle(
    kind: str, args: argparse.Namespace, pins: Pinning, repo: Path = REPO_DIR, label: str | None = None
) -> dict[str, Any]:
    async with running_server(kind, pins.server, label=label, repo=repo) as server:
        async with subscribers(server.url, 20, args.reader == "raw") as tally, publisher(server.url) as pub:
            await throughput(server, pub, tally, 20, 0.5, args.window, args.max_lag, timeout=20)  # warm-up
        mem = await idle_rss(server, args.idle)
    print(f"    idle: {mem.kib_per_conn:.1f} KiB/conn over {args.idle} connections", flush=True)
    return {"rss_kib_per_conn": mem.kib_per_conn, "_idle": asdict(mem)}


async def measure_n(server: ServerProcess, n: int, args: argparse.Namespace, pins: Pinning) -> dict[str, Any]:
    async with subscribers(server.url, n, args.reader == "raw") as tally, publisher(server.url) as pub:
        load = ForeignLoad(pins.own(server))
        tp = await throughput(server, pub, tally, n, args.duration, args.window, args.max_lag, timeout=60)
        foreign_tp = load.cores(pins.own(server))
        load = ForeignLoad(pins.own(server))
        rate = rate_for(args, n)
        lat = await latency(server, pub, tally, n, rate, args.latency_duration, 0.5, timeout=60)
        foreign_lat = load.cores(pins.own(server))
    return figures(n, tp, lat, foreign_tp, foreign_lat)


def figures(
    n: int, tp: Throughput, lat: Latency, foreign_tp: dict[int, float], foreign_lat: dict[int, float]
) -> dict[str, Any]:
    """Print one N's figures and return them as a run's entries (``_``: raw, not in the table)."""
    foreign = max([*foreign_tp.values(), *foreign_lat.values(), 0.0])
    print(f"    N={n}: {describe(tp, lat)}; foreign load {foreign:.0%} of a core", flush=True)
    return {
        f"deliv_per_s@{n}": tp.delivered_per_s,
        f"cpu_us_per_msg@{n}": tp.server_cpu_us_per_msg,
        f"server_util@{n}": tp.server_util,
        f"client_util@{n}": tp.client_util,
        f"rate@{n}": lat.rate,
        f"p50_ms@{n}": lat.p50_ms,
        f"p99_ms@{n}": lat.p99_ms,
        f"lat_server_util@{n}": lat.server_util,
        f"lat_client_util@{n}": lat.client_util,
        f"foreign_load@{n}": foreign,
        f"_throughput@{n}": asdict(tp),
        f"_latency@{n}": asdict(lat),
        f"_foreign@{n}": {"throughput": foreign_tp, "latency": foreign_lat},
    }


def describe(tp: Throughput, lat: Latency) -> str:
    flags = ("" if tp.complete else " INCOMPLETE") + (f" errors={tp.errors}" if tp.errors else "")
    lat_flags = (" SATURATED" if lat.saturated else "") + (f" errors={lat.errors}" if lat.errors else "")
    return (
        f"{tp.delivered_per_s:,.0f} msg/s (server {tp.server_util:.0%} CPU, load-gen "
        f"{tp.client_util:.0%}){flags}; at {lat.rate:g}/s p50 {lat.p50_ms:.2f} ms p99 "
        f"{lat.p99_ms:.2f} ms (server {lat.server_util:.0%}, load-gen {lat.client_util:.0%}){lat_flags}"
    )


async def run_one(
    kind: str, args: argparse.Namespace, pins: Pinning, repo: Path = REPO_DIR, label: str | None = None
) -> dict[str, Any]:
    """Idle memory on a fresh server, then every N on a second fresh server; bounded in time.
    ``repo``: the checkout whose library the servers import; ``label``: their name in messages."""
    budget = 120 + args.idle / 50 + len(args.subscribers) * (args.duration + args.latency_duration + 90)
    async with asyncio.timeout(budget):
        out = await measure_idle(kind, args, pins, repo, label)
        async with running_server(kind, pins.server, label=label, repo=repo) as server:
            for n in args.subscribers:
                out |= await measure_n(server, n, args, pins)
    return out


def noise(run: dict[str, Any]) -> float:
    """The worst foreign load seen in a run's timed phases, in cores."""
    return max([float(v) for k, v in run.items() if k.startswith("foreign_load@")] + [0.0])
