"""Cluster benchmark: two nodes sharing Redis against one node on the memory broker.

    python benchmarks/cluster.py [--quick] [--reps 3] [--subscribers 100,1000] [--json out.json]
                                 [--publishers 1] [--on-node-a 0.5] [--redis-url redis://...]

- **memory**: one ``dialogue_server.py`` node (memory broker), as in ``fanout.py``;
- **cluster**: two ``cluster_server.py`` nodes (uvicorn subprocesses on two ports)
  whose ``RedisBroker`` shares ``--redis-url`` under a key prefix of their own
  (one per repetition, deleted afterwards). The N subscribers are split across
  the nodes (the publisher's node gets the odd one) and the publisher joins
  node A, so half the deliveries cross nodes. Every event goes through Redis
  (the Lua publish script, then pub/sub back to both nodes), the publisher's
  node included.

CPU split (2 cores): the system under test gets CPU 0 in both cases - the
memory node alone, or both cluster nodes and ``redis-server`` (all its threads,
pinned for the cluster repetitions and restored afterwards). This process, the
load generator, is pinned to CPU 1. Same hardware for both, so the ratios are
the cost of the Redis broker (the Redis round trip, redis-py, a second
process), not a scaling figure: with a core per node a cluster adds capacity.

Per kind and repetition (alternating, ABBA), on fresh servers with a short
warm-up, for each N in ``--subscribers``: throughput (``--window`` publishes in
flight for ``--duration`` s; delivered msgs/s; server CPU per delivered
message, summed over both nodes and redis-server for the cluster), then
publish-to-delivery latency at a fixed offered rate (``--rates``, as
``fanout.py``). For the cluster the same figures are also given per half: the
subscribers on the publisher's node and on the other node, and the CPU of each
process. Medians over the repetitions, the ratios cluster/memory and the
targets: p50 latency at most 1 ms above the memory broker's, throughput at
least 0.6x the memory broker's.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _client import Publisher, Publishers, publisher, publishers, subscribers
from _cpu import ForeignLoad
from _phases import latency as latency_phase
from _phases import percentile, throughput
from _report import ratio, table
from _reps import (
    alternate,
    counts,
    fanout_args,
    fanout_parser,
    medians_of,
    quietest,
    run_all,
    setup_process,
    warn_if_changed,
    write_json,
)
from _runner import Pinning, figures, rate_for
from _servers import CpuMeter, ServerProcess, library_state, proc_cpu_seconds, running_server
from _tally import Tallies
from fanout import DEFAULT_RATES
from redis import Redis

KINDS = ("memory", "cluster")
COLUMNS = (("memory", "memory"), ("cluster", "cluster"))
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # the tests use database 15
TARGET_ADDED_P50_MS = 1.0
TARGET_THROUGHPUT = 0.6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = fanout_parser(KINDS, DEFAULT_RATES)
    add = p.add_argument
    add("--publishers", type=int, default=1, help="publishing connections, all on node A (default 1)")
    add("--on-node-a", type=float, default=0.5, help="share of the subscribers on node A (default 0.5)")
    add("--reader", choices=("raw", "websockets"), default="raw", help="subscribers' receive path")
    add("--redis-url", default=DEFAULT_REDIS_URL, help=f"the cluster's Redis (default {DEFAULT_REDIS_URL})")
    add("--no-pin-redis", action="store_true", help="leave redis-server's CPU affinity alone")
    a = fanout_args(p, argv, DEFAULT_RATES)
    return a


# Redis: the process, its CPU, its keys ------------------------------------------------
@dataclass
class RedisServer:
    url: str
    version: str
    pid: int | None  # None: not a process of this machine we can see
    prefix: str  # this run's keys: {prefix}{rep}:...

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid) if self.pid is not None else 0.0

    def describe(self) -> str:
        where = f"pid {self.pid}" if self.pid is not None else "not a local process: its CPU is not counted"
        return f"redis-server {self.version} ({where}) at {self.url}, key prefix {self.prefix!r}"


def find_redis(url: str) -> RedisServer:
    """Ask Redis for its version and pid; keep the pid only if it is a local redis-server."""
    client = Redis.from_url(url, socket_connect_timeout=3)
    try:
        info = client.info("server")
    finally:
        client.close()
    pid: int | None = int(info["process_id"])
    parts = urlsplit(url)
    local = parts.scheme == "unix" or parts.hostname in ("127.0.0.1", "localhost", "::1")
    try:
        is_redis = Path(f"/proc/{pid}/comm").read_text().startswith("redis")
    except OSError:
        is_redis = False
    if not (local and is_redis):
        pid = None
    return RedisServer(url, str(info["redis_version"]), pid, f"dialogue-bench-{secrets.token_hex(4)}:")


def delete_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (hex and ``:`` only: nothing to escape); return how many."""
    client = Redis.from_url(url, socket_connect_timeout=3)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        return len(keys)
    finally:
        client.close()


@contextmanager
def pinned(pid: int | None, cpu: int | None) -> Iterator[None]:
    """Pin every thread of ``pid`` to ``cpu`` for the block; then give each its old mask back."""
    saved: dict[int, set[int]] = {}
    try:
        if pid is not None and cpu is not None:
            for tid in map(int, os.listdir(f"/proc/{pid}/task")):
                with suppress(ProcessLookupError):
                    saved[tid] = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, {cpu})
        yield
    finally:
        for tid, mask in saved.items():
            with suppress(OSError):
                os.sched_setaffinity(tid, mask)


def can_pin(pid: int) -> bool:
    """Whether we may set ``pid``'s affinity (tried by setting the mask it has)."""
    try:
        os.sched_setaffinity(pid, os.sched_getaffinity(pid))
    except OSError:
        return False
    return True


# the system under test ------------------------------------------------------------------
class Group:
    """The nodes of one kind (plus redis-server for the cluster), read as one server."""

    def __init__(self, nodes: list[ServerProcess], redis: RedisServer | None) -> None:
        self.nodes, self.redis = nodes, redis
        self.parts: dict[str, CpuMeter] = {}
        if len(nodes) == 2:
            self.parts = {"node_a": nodes[0], "node_b": nodes[1]}
            if redis is not None and redis.pid is not None:
                self.parts["redis"] = redis

    def cpu_seconds(self) -> float:
        total = sum(node.cpu_seconds() for node in self.nodes)
        return total + (self.redis.cpu_seconds() if self.redis is not None else 0.0)

    def part_seconds(self) -> dict[str, float]:
        return {name: part.cpu_seconds() for name, part in self.parts.items()}


@asynccontextmanager
async def running(kind: str, pins: Pinning, redis: RedisServer | None, prefix: str) -> AsyncIterator[Group]:
    if kind == "memory":
        async with running_server("dialogue", pins.server, label="memory node") as node:
            yield Group([node], None)
        return
    assert redis is not None
    env = {"BENCH_REDIS_URL": redis.url, "BENCH_REDIS_PREFIX": prefix}
    async with (
        running_server("cluster", pins.server, env=env, label="cluster node A") as a,
        running_server("cluster", pins.server, env=env, label="cluster node B") as b,
    ):
        yield Group([a, b], redis)


@asynccontextmanager
async def split_room(
    group: Group, n: int, raw: bool, pubs: int = 1, on_a: float = 0.5
) -> AsyncIterator[tuple[Tallies, Publisher | Publishers]]:
    """``n`` subscribers, the share ``on_a`` (rounded up) on node A with the publishers, the rest on B.

    One publisher, as ``fanout.py``, also receives its events; ``pubs`` > 1 publishers do not.
    """
    counts = [n] if len(group.nodes) == 1 else [math.ceil(n * on_a), n - math.ceil(n * on_a)]
    async with AsyncExitStack() as stack:
        parts = [
            await stack.enter_async_context(subscribers(node.url, count, raw))
            for node, count in zip(group.nodes, counts, strict=True)
        ]
        url = group.nodes[0].url
        pub = await stack.enter_async_context(publisher(url) if pubs == 1 else publishers(url, pubs))
        yield Tallies(*parts), pub


# the measurements ----------------------------------------------------------------------
async def measure_n(group: Group, n: int, args: argparse.Namespace, pins: Pinning) -> dict[str, Any]:
    """``_runner.measure_n`` over the group, with the per-node figures for the cluster."""
    async with split_room(group, n, args.reader == "raw", args.publishers, args.on_node_a) as (tally, pub):
        load = ForeignLoad(pins.own(group))
        cpu0 = group.part_seconds()
        tp = await throughput(group, pub, tally, n, args.duration, args.window, args.max_lag, timeout=60)
        cpu1 = group.part_seconds()
        foreign_tp = load.cores(pins.own(group))
        delivered = [part.delivered for part in tally.parts]
        load = ForeignLoad(pins.own(group))
        lat = await latency_phase(
            group, pub, tally, n, rate_for(args, n), args.latency_duration, 0.5, timeout=60
        )
        foreign_lat = load.cores(pins.own(group))
        lats = [sorted(part.latencies) for part in tally.parts]
    out = figures(n, tp, lat, foreign_tp, foreign_lat)
    if len(group.nodes) != 2:
        return out
    halves: dict[str, float] = {}
    for name, got, values in zip(("same", "other"), delivered, lats, strict=True):
        halves[f"{name}_deliv_per_s@{n}"] = got / tp.seconds
        halves[f"{name}_p50_ms@{n}"] = percentile(values, 0.50) / 1e6
        halves[f"{name}_p99_ms@{n}"] = percentile(values, 0.99) / 1e6
    for name in group.parts:
        halves[f"{name}_util@{n}"] = (cpu1[name] - cpu0[name]) / tp.seconds
    cpu = ", ".join(f"{name} {halves[f'{name}_util@{n}']:.0%}" for name in group.parts)
    print(
        f"      other node: {halves[f'other_deliv_per_s@{n}']:,.0f} msg/s, p50 "
        f"{halves[f'other_p50_ms@{n}']:.2f} ms p99 {halves[f'other_p99_ms@{n}']:.2f} ms; "
        f"publisher's node: p50 {halves[f'same_p50_ms@{n}']:.2f} ms p99 "
        f"{halves[f'same_p99_ms@{n}']:.2f} ms; tput-phase CPU: {cpu}",
        flush=True,
    )
    return out | halves


async def run_one(
    kind: str, args: argparse.Namespace, pins: Pinning, redis: RedisServer | None
) -> dict[str, Any]:
    """Fresh servers (and, for the cluster, a fresh key prefix), a warm-up, then every N."""
    budget = 60 + len(args.subscribers) * (args.duration + args.latency_duration + 90)
    prefix = f"{redis.prefix}{secrets.token_hex(3)}:" if redis is not None else ""
    pin = (
        pinned(redis.pid, pins.server)
        if kind == "cluster" and redis is not None and not args.no_pin_redis
        else nullcontext()
    )
    out: dict[str, Any] = {}
    try:
        with pin:
            async with asyncio.timeout(budget), running(kind, pins, redis, prefix) as group:
                room = split_room(group, 20, args.reader == "raw", args.publishers, args.on_node_a)
                async with room as (tally, pub):
                    await throughput(group, pub, tally, 20, 0.5, args.window, args.max_lag, timeout=20)
                for n in args.subscribers:
                    out |= await measure_n(group, n, args, pins)
    finally:
        if kind == "cluster" and redis is not None:
            await asyncio.to_thread(delete_keys, redis.url, prefix)
    return out


# report --------------------------------------------------------------------------------
def cpu_split(pins: Pinning, redis: RedisServer | None, args: argparse.Namespace) -> str:
    if pins.server is None or pins.client is None:
        return "fewer than 2 CPUs: nothing pinned, everything shares them"
    if redis is None or redis.pid is None:
        where = "redis-server unpinned (not a local process)"
    elif args.no_pin_redis:
        where = "redis-server not pinned (--no-pin-redis)"
    else:
        where = f"redis-server (all threads; restored after each repetition) on CPU {pins.server}"
    return (
        f"memory node on CPU {pins.server}; cluster nodes A and B and {where}; "
        f"load generator on CPU {pins.client}"
    )


def verdicts(med: dict[str, dict[str, float]], sizes: list[int]) -> tuple[str, dict[str, Any]]:
    lines = ["targets (cluster against memory, medians):"]
    found: dict[str, Any] = {}
    for n in sizes:
        mem, clu = med.get("memory", {}), med.get("cluster", {})
        key = f"p50_ms@{n}"
        if key in mem and key in clu:
            added = clu[key] - mem[key]
            ok = added <= TARGET_ADDED_P50_MS
            found[f"added_p50_ms@{n}"] = {"value": added, "pass": ok}
            lines.append(
                f"  latency p50 added (N={n}) <= {TARGET_ADDED_P50_MS:g} ms: {clu[key]:.2f} - "
                f"{mem[key]:.2f} = {added:+.2f} ms -> {'PASS' if ok else 'FAIL'}"
            )
        else:
            lines.append(f"  latency p50 added (N={n}) <= {TARGET_ADDED_P50_MS:g} ms: not measured")
        r = ratio(med, f"deliv_per_s@{n}", "cluster", "memory")
        if r is None:
            lines.append(f"  delivered msgs/s (N={n}) >= {TARGET_THROUGHPUT}x memory: not measured")
        else:
            ok = r >= TARGET_THROUGHPUT
            found[f"throughput_ratio@{n}"] = {"value": r, "pass": ok}
            verdict = "PASS" if ok else "FAIL"
            lines.append(f"  delivered msgs/s (N={n}) >= {TARGET_THROUGHPUT}x memory: {r:.2f}x -> {verdict}")
    return "\n".join(lines), found


def print_header(
    args: argparse.Namespace, split: str, redis: RedisServer | None, library: dict[str, str]
) -> None:
    rates = ", ".join(f"N={n}: {rate_for(args, n):g}/s" for n in args.subscribers)
    reader = "raw frames after the join" if args.reader == "raw" else "with websockets recv()"
    lines = [
        f"machine: {os.cpu_count()} CPUs; {split}",
        "servers: uvicorn --ws websockets-sansio --log-level warning --no-access-log (--loop auto: "
        f"{'uvloop' if find_spec('uvloop') else 'asyncio'}); memory: dialogue_server.py; cluster: "
        "2 x cluster_server.py (RedisBroker)",
        *([f"redis: {redis.describe()} (deleted afterwards)"] if redis is not None else []),
        f"library: dialogue_fastapi at {library['commit']}, newest file {library['newest_file']}",
        "cluster: subscribers split across the nodes, the publisher on node A; every event goes "
        "through Redis; server CPU = both nodes + redis-server",
        f"load generator: this process, one event loop; subscribers read {reader}",
        f"reps={args.reps}; N={args.subscribers}; throughput {args.duration:g} s (window "
        f"{args.window}, {args.publishers} publishing connection(s)); cluster: {args.on_node_a:.0%} of "
        f"the subscribers on node A; latency "
        f"{args.latency_duration:g} s at {rates}",
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pins, _ = setup_process()
    redis: RedisServer | None = None
    if args.only != "memory":
        try:
            redis = find_redis(args.redis_url)
        except Exception as exc:
            print(f"Redis at {args.redis_url} is not usable ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2
        if redis.pid is not None and not args.no_pin_redis and not can_pin(redis.pid):
            print(f"cannot set redis-server's CPU affinity (pid {redis.pid}); it stays unpinned")
            args.no_pin_redis = True
    split = cpu_split(pins, redis, args)
    library = library_state()
    print_header(args, split, redis, library)
    kinds = [args.only] if args.only else list(KINDS)

    async def repetition(kind: str, _rep: int) -> dict[str, Any] | None:
        return await quietest(kind, lambda _n: run_one(kind, args, pins, redis), args, pins)

    try:
        runs = run_all(alternate(kinds, args.reps, repetition))
    finally:
        if redis is not None:  # each repetition deletes its keys; this catches an interrupted one
            left = delete_keys(redis.url, redis.prefix)
            if left:
                print(f"redis: deleted {left} key(s) left under {redis.prefix!r}")
    if runs is None:
        return 130
    med = medians_of(runs)
    verdict_text, found = verdicts(med, args.subscribers)
    print(f"\nmedians over the repetitions ({counts(runs)}):\n{table(med, COLUMNS)}\n\n{verdict_text}")
    print(f"CPU split: {split}")
    end = library_state()
    warn_if_changed(library, end)
    write_json(args.json, args, cpu_split=split, library={"start": library, "end": end},
               redis=None if redis is None else vars(redis), runs=runs, medians=med, targets=found)
    return 0 if med else 1

if __name__ == "__main__":
    sys.exit(main())
