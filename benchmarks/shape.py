"""Many small rooms ("Centrifugo shape" at 1/100 scale): dialogue-fastapi with room families.

    python benchmarks/shape.py [--quick] [--connections 10000] [--duration 20] [--only K,K]
                               [--gc-variants] [--nodes 2 --broker URL] [--idle N] [--json out.json]

Every connection is its own user (``u<i>``), joins its personal room ``user:u<i>`` (family
``user:{id}``, ``members=["id"]``) and one group of 10 (``group:{n:int}``). Members publish
into their groups (500/s in all for 10,000 connections: 5,000 deliveries/s, the sender
included); the application publishes into personal rooms (250/s) through the benchmark
app's ``POST /_bench/trigger``, which calls ``dialogue.trigger``; 33 connections a second
are closed and replaced by new ones for the same users. Rates scale with ``--connections``.

Kinds, each a ``uvicorn --ws websockets-sansio`` subprocess pinned to CPU 0 (uvloop), one
after the other in one run: ``dialogue`` (``shape_server.py``), ``baseline`` (plain
Starlette, ``shape_baseline_server.py``), ``socketio`` (python-socketio,
``shape_socketio_server.py``; skipped if it is not installed); ``--gc-variants`` adds
``dialogue+freeze`` and ``dialogue+thresholds``; ``--nodes 2`` runs ``dialogue`` and
``dialogue-x2`` (two nodes on a ``RedisBroker``, both nodes and redis-server on CPU 0). The
load generator (this process: raw-frame connections, one uvloop loop) is on CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from _cpu import ForeignLoad, wait_for_quiet
from _report import text_table
from _reps import run_all, setup_process, write_json
from _runner import Pinning
from _servers import ServerError, ServerProcess, library_state, proc_cpu_seconds, running_server
from _shape_client import DialogueConn, Http, RawConn, SioConn
from _shape_load import Shape, Workload

DEFAULT_BROKER = "redis://127.0.0.1:6379/14"  # the tests use database 15
PER_CONN = {"group": 0.05, "personal": 0.025, "churn": 0.0033}  # per connection and second
TARGET_CPU_VS_BASELINE = 1.5  # dialogue / baseline, server CPU per delivery: at most
TARGET_VS_SOCKETIO = 4.0  # dialogue / socketio, deliveries per server CPU-second: at least


@dataclass(frozen=True)
class Kind:
    name: str
    app: str  # key of _servers.APPS
    conn: type[RawConn]
    env: dict[str, str] = field(default_factory=dict)
    nodes: int = 1


def kinds_for(args: argparse.Namespace) -> list[Kind]:
    have_sio = find_spec("socketio") is not None
    out = [Kind("dialogue", "shape-dialogue", DialogueConn)]
    if args.gc_variants:
        out += [Kind("dialogue+freeze", "shape-dialogue", DialogueConn, {"SHAPE_GC_FREEZE": "1"}),
                Kind("dialogue+thresholds", "shape-dialogue", DialogueConn,
                     {"SHAPE_GC_THRESHOLDS": args.gc_thresholds})]
    if args.nodes == 2:
        out.append(Kind("dialogue-x2", "shape-dialogue", DialogueConn, nodes=2))
    else:
        out.append(Kind("baseline", "shape-baseline", DialogueConn))
        if have_sio:
            out.append(Kind("socketio", "shape-socketio", SioConn))
    if args.only:
        wanted = args.only.split(",")
        out = [k for k in out if k.name in wanted]
    if args.nodes != 2 and not have_sio and (not args.only or "socketio" in args.only):
        print("python-socketio is not installed: the socketio comparison is skipped "
              "(pip install python-socketio)", flush=True)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = p.add_argument
    add("--quick", action="store_true", help="1,000 connections, 5 s measured, 1 s warm-up")
    add("--connections", type=int, default=None, help="connections (10,000; --quick 1,000)")
    add("--duration", type=float, default=None, help="measured seconds (20; --quick 5)")
    add("--warmup", type=float, default=None, help="seconds of load before measuring (3; --quick 1)")
    add("--group-size", type=int, default=10, help="members per group (10)")
    add("--group-rate", type=float, default=None, help="group publishes/s in all (0.05 per connection)")
    add("--personal-rate", type=float, default=None, help="personal-room publishes/s (0.025 per conn.)")
    add("--churn", type=float, default=None, help="connections replaced per second (0.0033 per conn.)")
    add("--only", help="comma-separated kinds: dialogue, baseline, socketio, dialogue+freeze, "
                       "dialogue+thresholds, dialogue-x2")
    add("--gc-variants", action="store_true", help="also dialogue with gc.freeze() and with thresholds")
    add("--gc-thresholds", default="50000,20,100", help="dialogue+thresholds' gc.set_threshold")
    add("--nodes", type=int, choices=(1, 2), default=1, help="2: dialogue and dialogue-x2 (Redis)")
    add("--broker", default=DEFAULT_BROKER, help=f"--nodes 2's Redis (default {DEFAULT_BROKER})")
    add("--idle", type=int, default=None, metavar="N",
        help="N connections, no group publishes and no churn: memory per connection and instance")
    add("--concurrency", type=int, default=128, help="connection attempts / joins in flight")
    add("--noise-limit", type=float, default=0.15,
        help="wait (up to 30 s) for other processes to take less than this of the cores first")
    add("--profile", type=Path, metavar="DIR",
        help="py-spy record each kind's server(s) during the measured phase (folded stacks in DIR)")
    add("--seed", type=int, default=1, help="random seed (publishers, victims, users)")
    add("--json", type=Path, help="write every figure here")
    a = p.parse_args(argv)
    if a.idle:
        a.connections = a.idle
        a.group_rate = 0.0 if a.group_rate is None else a.group_rate
        a.churn = 0.0 if a.churn is None else a.churn
    a.connections = a.connections or (1000 if a.quick else 10_000)
    if a.connections > 19_000:
        p.error("at most 19,000 connections: one load-generator process, 20,000 open files")
    a.duration = a.duration or (5.0 if a.quick else 20.0)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if a.quick else 3.0)
    n = a.connections
    a.group_rate = PER_CONN["group"] * n if a.group_rate is None else a.group_rate
    a.personal_rate = PER_CONN["personal"] * n if a.personal_rate is None else a.personal_rate
    a.churn = PER_CONN["churn"] * n if a.churn is None else a.churn
    return a


# the system under test --------------------------------------------------------------------
class System:
    """One kind's server processes (and redis-server for ``dialogue-x2``), read as one."""

    def __init__(self, nodes: list[ServerProcess], redis_pid: int | None) -> None:
        self.nodes, self.redis_pid = nodes, redis_pid

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def cpu_seconds(self) -> float:
        own = sum(node.cpu_seconds() for node in self.nodes)
        return own + (proc_cpu_seconds(self.redis_pid) if self.redis_pid is not None else 0.0)

    def parts(self) -> dict[str, float]:
        out = {f"node{i}": node.cpu_seconds() for i, node in enumerate(self.nodes)}
        if self.redis_pid is not None and len(self.nodes) > 1:
            out["redis"] = proc_cpu_seconds(self.redis_pid)
        return out

    def rss_kib(self) -> int:
        return sum(node.rss_kib() for node in self.nodes)


@asynccontextmanager
async def system(kind: Kind, pins: Pinning, args: argparse.Namespace) -> AsyncIterator[System]:
    async with AsyncExitStack() as stack:
        env = dict(kind.env)
        redis_pid: int | None = None
        if kind.nodes > 1:
            from cluster import delete_keys, find_redis, pinned

            redis = find_redis(args.broker)
            prefix = redis.prefix
            env |= {"SHAPE_REDIS_URL": args.broker, "SHAPE_REDIS_PREFIX": prefix}
            stack.callback(delete_keys, args.broker, prefix)
            redis_pid = redis.pid
            stack.enter_context(pinned(redis.pid, pins.server))
        labels = [f"{kind.name} node {i}" for i in range(kind.nodes)] if kind.nodes > 1 else [kind.name]
        nodes = [await stack.enter_async_context(running_server(kind.app, pins.server, env=env, label=label))
                 for label in labels]
        yield System(nodes, redis_pid)


# one kind -----------------------------------------------------------------------------------
def pct(values: list[int], q: float) -> float:
    """The q-quantile (nearest rank) of ns values, in ms."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] / 1e6


def own_cpu(pins: Pinning, sut: System) -> dict[int, float]:
    if pins.server is None or pins.client is None:
        return {}
    return {pins.server: sut.cpu_seconds(), pins.client: time.process_time()}


async def run_kind(kind: Kind, args: argparse.Namespace, pins: Pinning) -> dict[str, Any]:
    shape = Shape(args.connections, args.group_size, args.group_rate, args.personal_rate, args.churn,
                  args.concurrency)
    out: dict[str, Any] = {"kind": kind.name, "nodes": kind.nodes, "env": kind.env}
    async with system(kind, pins, args) as sut:
        https = [Http(port) for port in sut.ports]
        victims = math.ceil(args.churn * args.duration)
        wl = Workload(shape, kind.conn, sut.ports, https, victims, args.seed)
        await asyncio.sleep(0.5)
        rss0 = sut.rss_kib()
        keepalive = asyncio.create_task(wl.keepalive())
        try:
            t_open = await wl.open_all()
            rss1 = sut.rss_kib()
            t_personal = await wl.join_all("personal")
            rss2 = sut.rss_kib()
            t_group = await wl.join_all("group")
            rss3 = sut.rss_kib()
            n, groups = shape.connections, shape.groups
            out |= {
                "connect_s": t_open + t_personal + t_group, "open_s": t_open,
                "join_personal_s": t_personal, "join_group_s": t_group,
                "rss_start_mib": rss0 / 1024, "rss_joined_mib": rss3 / 1024,
                "kib_per_conn_bare": (rss1 - rss0) / n,
                "kib_per_personal_instance": (rss2 - rss1) / n,
                "kib_per_group_instance": (rss3 - rss2) / groups,
                "kib_per_conn_total": (rss3 - rss0) / n,
            }
            print(f"    connected {n:,} in {out['connect_s']:.1f} s (open {t_open:.1f}, personal joins "
                  f"{t_personal:.1f}, group joins {t_group:.1f}); RSS {rss0 / 1024:.0f} -> "
                  f"{rss3 / 1024:.0f} MiB: {out['kib_per_conn_total']:.1f} KiB/conn", flush=True)
            if args.warmup > 0:
                await wl.drive(args.warmup, measured=False)
                await wl.settle()
            out |= await measured_phase(wl, sut, https, args, pins)
            out["rss_end_mib"] = sut.rss_kib() / 1024
            out["kib_per_conn_after"] = (sut.rss_kib() - rss0) / n
        finally:
            keepalive.cancel()
            await wl.close_all()
    return out


async def measured_phase(wl: Workload, sut: System, https: list[Http], args: argparse.Namespace,
                         pins: Pinning) -> dict[str, Any]:
    for http in https:
        await http.json("POST", "/_bench/gc/reset")
    stats = wl.stats
    churn_before, churn_ms_before, failures_before = wl.churned, len(wl.churn_ms), wl.churn_failures
    load = ForeignLoad(own_cpu(pins, sut))
    parts0 = sut.parts()
    cpu0, lg0, t0 = sut.cpu_seconds(), time.process_time(), time.perf_counter()
    reads0, frames0 = stats.reads, stats.frames_in
    spies = start_profiles(sut, args, pins)
    await wl.drive(args.duration, measured=True)
    cpu1, lg1, t1 = sut.cpu_seconds(), time.process_time(), time.perf_counter()
    parts1 = sut.parts()
    foreign = load.cores(own_cpu(pins, sut))
    gcs = [await http.json("GET", "/_bench/gc") for http in https]
    drained = await wl.drain()
    for spy in spies:
        spy.wait(timeout=30)
    wall, server_cpu = t1 - t0, cpu1 - cpu0
    lat_all = list(stats.lat_group) + list(stats.lat_personal)
    delivered = stats.measured
    losses = wl.losses()
    churn_ms = wl.churn_ms[churn_ms_before:]
    out: dict[str, Any] = {
        "deliv_per_s": delivered / args.duration,
        "offered_deliv_per_s": args.group_rate * args.group_size + args.personal_rate,
        "p50_ms": pct(lat_all, 0.50), "p99_ms": pct(lat_all, 0.99), "max_ms": pct(lat_all, 1.0),
        "group_p99_ms": pct(list(stats.lat_group), 0.99),
        "personal_p50_ms": pct(list(stats.lat_personal), 0.50),
        "personal_p99_ms": pct(list(stats.lat_personal), 0.99),
        "server_util": server_cpu / wall,
        "cpu_us_per_deliv": server_cpu / delivered * 1e6 if delivered else math.nan,
        "deliv_per_cpu_s": delivered / server_cpu if server_cpu else math.nan,
        "client_util": (lg1 - lg0) / wall,
        "foreign_load": max([*foreign.values(), 0.0]),
        "lost": losses["lost"], "expected": losses["expected"], "extra": losses["extra"],
        "churned": wl.churned - churn_before, "churn_failures": wl.churn_failures - failures_before,
        "churn_p50_ms": pct([int(x * 1e6) for x in churn_ms], 0.5),
        "churn_p99_ms": pct([int(x * 1e6) for x in churn_ms], 0.99),
        "gc_gen2": sum(g["gen2"] for g in gcs),
        "gc_max_pause_ms": max(g["max_pause_ms"] for g in gcs),
        "gc_total_pause_ms": sum(g["total_pause_ms"] for g in gcs),
        "gc_max_pause_cpu_ms": max(g["max_pause_cpu_ms"] for g in gcs),
        "gc_total_pause_cpu_ms": sum(g["total_pause_cpu_ms"] for g in gcs),
        "gc_collections": [sum(g["collections"][i] for g in gcs) for i in range(3)],
        "frames_per_read": (stats.frames_in - frames0) / max(1, stats.reads - reads0),
        "publish_errors": dict(stats.pub_errors), "trigger_errors": wl.trigger_errors,
        "trigger_error_kinds": dict(wl.trigger_error_kinds),
        "http_retries": sum(http.retries for http in https),
        "skipped_publishes": wl.skipped_publishes, "other_frames": dict(stats.other),
        "closes": {str(k): v for k, v in stats.closes.items()},
        "drain_s": drained, "samples": len(lat_all),
        "_gc": gcs, "_losses": losses,
        "_cpu_parts": {k: (parts1[k] - parts0.get(k, 0.0)) / wall for k in parts1},
    }
    print(f"    {out['deliv_per_s']:,.0f} deliveries/s (offered {out['offered_deliv_per_s']:,.0f}); "
          f"p50 {out['p50_ms']:.2f} p99 {out['p99_ms']:.2f} max {out['max_ms']:.2f} ms; server "
          f"{out['server_util']:.0%} CPU, {out['cpu_us_per_deliv']:.1f} us/delivery; load-gen "
          f"{out['client_util']:.0%}; lost {losses['lost']} of {losses['expected']:,}; GC gen2 "
          f"{out['gc_gen2']}, longest pause {out['gc_max_pause_ms']:.1f} ms "
          f"({out['gc_max_pause_cpu_ms']:.1f} CPU); foreign load "
          f"{out['foreign_load']:.0%}", flush=True)
    if len(sut.nodes) > 1:
        print("    CPU: " + ", ".join(f"{k} {v:.0%}" for k, v in out["_cpu_parts"].items()), flush=True)
    for key in ("publish_errors", "trigger_error_kinds", "other_frames", "closes"):
        if out[key]:
            print(f"    {key}: {out[key]}", flush=True)
    if out["trigger_errors"] or out["churn_failures"] or out["skipped_publishes"]:
        print(f"    trigger errors {out['trigger_errors']}, churn failures {out['churn_failures']}, "
              f"skipped publishes {out['skipped_publishes']}", flush=True)
    return out


def start_profiles(sut: System, args: argparse.Namespace, pins: Pinning) -> list[subprocess.Popen[bytes]]:
    """``--profile DIR``: py-spy (pinned to this process's CPU, ``--nonblocking``) samples each
    server during the phase; the figures of a profiled run are perturbed all the same."""
    spy = shutil.which("py-spy")
    if args.profile is None or spy is None:
        return []
    args.profile.mkdir(parents=True, exist_ok=True)
    cpu = pins.client

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return [subprocess.Popen(
        [spy, "record", "--pid", str(node.proc.pid), "--duration", str(int(args.duration)), "--rate", "100",
         "--nonblocking", "--format", "raw",
         "--output", str(args.profile / f"{node.label.replace(' ', '-')}.folded")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=pin)
        for node in sut.nodes]


# report ---------------------------------------------------------------------------------------
ROWS: list[tuple[str, str, str]] = [
    ("deliv_per_s", "deliveries/s (measured)", "{:,.0f}"),
    ("offered_deliv_per_s", "  offered", "{:,.0f}"),
    ("p50_ms", "latency p50 ms", "{:.2f}"),
    ("p99_ms", "latency p99 ms", "{:.2f}"),
    ("max_ms", "latency max ms", "{:.2f}"),
    ("group_p99_ms", "  group events p99 ms", "{:.2f}"),
    ("personal_p99_ms", "  personal (trigger) p99 ms", "{:.2f}"),
    ("server_util", "server CPU utilisation", "{:.0%}"),
    ("cpu_us_per_deliv", "server CPU us/delivery", "{:.1f}"),
    ("deliv_per_cpu_s", "deliveries per server CPU-second", "{:,.0f}"),
    ("client_util", "load-gen CPU utilisation", "{:.0%}"),
    ("connect_s", "connect all (open + 2 joins) s", "{:.1f}"),
    ("open_s", "  open (handshake + hello) s", "{:.1f}"),
    ("join_personal_s", "  personal joins s", "{:.1f}"),
    ("join_group_s", "  group joins s", "{:.1f}"),
    ("churn_p50_ms", "churn reconnect+joins p50 ms", "{:.1f}"),
    ("churn_p99_ms", "churn reconnect+joins p99 ms", "{:.1f}"),
    ("churned", "connections churned (measured)", "{:,.0f}"),
    ("kib_per_conn_total", "RSS KiB per connection (all)", "{:.1f}"),
    ("kib_per_conn_bare", "  bare connection", "{:.1f}"),
    ("kib_per_personal_instance", "  personal instance + membership", "{:.1f}"),
    ("kib_per_group_instance", "  group instance + 10 memberships", "{:.1f}"),
    ("kib_per_conn_after", "RSS KiB per connection after the run", "{:.1f}"),
    ("lost", "lost (non-churned connections)", "{:,.0f}"),
    ("expected", "  of expected", "{:,.0f}"),
    ("gc_gen2", "GC gen-2 collections (measured)", "{:,.0f}"),
    ("gc_max_pause_ms", "GC longest pause ms", "{:.1f}"),
    ("gc_total_pause_ms", "GC total pause ms", "{:.1f}"),
    ("gc_max_pause_cpu_ms", "  longest pause, CPU ms", "{:.1f}"),
    ("gc_total_pause_cpu_ms", "  total pause, CPU ms", "{:.1f}"),
    ("foreign_load", "foreign CPU load (cores)", "{:.2f}"),
]


VARIANT_COLUMNS = [("gc_max_pause_ms", "{:.1f}"), ("gc_max_pause_cpu_ms", "{:.1f}"),
                   ("gc_total_pause_ms", "{:.1f}"), ("p99_ms", "{:.2f}"),
                   ("max_ms", "{:.2f}"), ("cpu_us_per_deliv", "{:.1f}"), ("kib_per_conn_total", "{:.1f}")]


def fmt(spec: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return spec.format(value)


def report(runs: dict[str, dict[str, Any]], idle: bool = False) -> tuple[str, dict[str, Any]]:
    """The table, the targets (not in ``--idle`` mode: no group traffic) and the GC variants."""
    names = list(runs)
    rows = [["metric", *names]]
    for key, label, spec in ROWS:
        if any(key in runs[k] for k in names):
            rows.append([label, *(fmt(spec, runs[k].get(key)) for k in names)])
    lines = [text_table(rows)]
    verdicts: dict[str, Any] = {}
    d = None if idle else runs.get("dialogue")
    b, s = runs.get("baseline"), runs.get("socketio")
    if d and b:
        r = d["cpu_us_per_deliv"] / b["cpu_us_per_deliv"]
        ok = r <= TARGET_CPU_VS_BASELINE
        verdicts["cpu_per_deliv_vs_baseline"] = {"ratio": r, "target": TARGET_CPU_VS_BASELINE, "pass": ok}
        lines.append(f"server CPU per delivery dialogue/baseline: {r:.2f}x (target <= "
                     f"{TARGET_CPU_VS_BASELINE}x: {'PASS' if ok else 'FAIL'})")
        lines.append(f"latency p99 dialogue/baseline: {d['p99_ms'] / b['p99_ms']:.2f}x")
    if d and s:
        r = d["deliv_per_cpu_s"] / s["deliv_per_cpu_s"]
        ok = r >= TARGET_VS_SOCKETIO
        verdicts["deliv_per_cpu_vs_socketio"] = {"ratio": r, "target": TARGET_VS_SOCKETIO, "pass": ok}
        lines.append(f"deliveries per server CPU-second dialogue/socketio: {r:.2f}x (target >= "
                     f"{TARGET_VS_SOCKETIO}x: {'PASS' if ok else 'FAIL'})")
    if d:
        ok = d["lost"] == 0
        verdicts["no_losses"] = ok
        lines.append(f"dialogue losses outside churned connections: {d['lost']} "
                     f"({'PASS' if ok else 'FAIL'}: none expected)")
    variants = [k for k in names if k.startswith("dialogue")]
    if len(variants) > 1:
        head = ["dialogue variant", "GC setting", "gen-2", "gen-0/1", "longest pause ms", "(CPU ms)",
                "total pause ms",
                "p99 ms", "max ms", "us/delivery", "KiB/conn"]
        table = [head]
        for k in variants:
            r0 = runs[k]
            setting = ", ".join(f"{e}={v}" for e, v in r0.get("env", {}).items()) or "default"
            if r0.get("nodes", 1) > 1:
                setting = f"{setting}; {r0['nodes']} nodes on Redis"
            cols = r0.get("gc_collections", [0, 0, 0])
            table.append([k, setting, fmt("{:,.0f}", r0.get("gc_gen2")), f"{cols[0]}/{cols[1]}",
                          *(fmt(spec, r0.get(key)) for key, spec in VARIANT_COLUMNS)])
        lines.append("\n" + text_table(table))
    return "\n".join(lines), verdicts


def print_header(args: argparse.Namespace, kinds: list[Kind], split: str) -> None:
    state = library_state()
    mode = f"idle: {args.idle:,} connections" if args.idle else f"{args.connections:,} connections"
    print("\n".join([
        f"machine: {os.cpu_count()} CPUs; {split}"
        + ("; dialogue-x2: both nodes and redis-server on the server's CPU" if args.nodes == 2 else ""),
        f"library: {state['commit']}, newest file {state['newest_file']}",
        f"servers: uvicorn --ws websockets-sansio (loop: {'uvloop' if find_spec('uvloop') else 'asyncio'}); "
        f"kinds: {', '.join(k.name for k in kinds)}",
        f"shape: {mode}, groups of {args.group_size}; group publishes {args.group_rate:g}/s, personal "
        f"(POST /_bench/trigger -> trigger) {args.personal_rate:g}/s, churn {args.churn:g}/s; "
        f"warm-up {args.warmup:g} s, measured {args.duration:g} s",
    ]), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pins, split = setup_process()
    kinds = kinds_for(args)
    if not kinds:
        print("nothing to run", file=sys.stderr)
        return 2
    print_header(args, kinds, split)
    state = library_state()

    async def everything() -> dict[str, list[dict[str, Any]]]:
        runs: dict[str, list[dict[str, Any]]] = {}
        for kind in kinds:
            print(f"{kind.name}:", flush=True)
            t0 = time.monotonic()
            if pins.server is not None and pins.client is not None:
                busy = await wait_for_quiet({pins.server, pins.client}, args.noise_limit, max_wait=30)
                if busy >= args.noise_limit:
                    print(f"    cores still {busy:.0%} busy with other processes; measuring anyway",
                          flush=True)
            try:
                budget = 300 + args.connections / 20 + args.duration * 3
                async with asyncio.timeout(budget):
                    runs[kind.name] = [await run_kind(kind, args, pins)]
            except ServerError as exc:
                print(f"    {kind.name} did not start:\n{exc}", flush=True)
            except Exception as exc:
                print(f"    {kind.name} failed: {exc!r}", flush=True)
            print(f"    ({time.monotonic() - t0:.0f} s)", flush=True)
        return runs

    raw = run_all(everything())
    if raw is None:
        return 130
    runs = {k: v[0] for k, v in raw.items() if v}
    if not runs:
        return 1
    text, verdicts = report(runs, idle=bool(args.idle))
    print(f"\n{text}")
    if library_state() != state:
        print("WARNING: dialogue_fastapi changed during the run")
    write_json(args.json, args, cpu_split=split, library=state, runs=runs, verdicts=verdicts,
               run_id=secrets.token_hex(4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
