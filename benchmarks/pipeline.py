"""Publish pipeline benchmark: what middleware and rate limits cost per publish.

    python benchmarks/pipeline.py [--quick] [--reps 3] [--only none,middleware,memory,redis] [--json out.json]
                                  [--broker redis|memory] [--against DIR]

One dialogue server process (``pipeline_server.py``, a ``uvicorn --ws
websockets-sansio`` subprocess pinned to CPU 0) per configuration and
repetition; this process, the load generator (one uvloop event loop), is
pinned to CPU 1. Every configuration runs on the same broker, ``--broker``:
``redis`` (default; ``RedisBroker`` on ``--redis-url`` under the repetition's
key prefix, redis-server's CPU counts as the server's in every row) or
``memory`` (the default before the fused limits: rows measured before
2026-12-04 are ``--broker memory``). The configurations, each a step on the
previous one:

- ``none``: no middleware, no rate limit;
- ``middleware``: ``log_events`` (DEBUG, logger at WARNING), ``content_filter``, ``transform``;
- ``memory``: plus ``RateLimit(default="1000000/minute")`` in ``memory://``
  (the default strategy, ``sliding-window``);
- ``redis``: the same limit in Redis (``--redis-url``, a key prefix per
  repetition, its keys deleted afterwards); redis-server's threads are pinned
  to CPU 0 for the repetition and its CPU counts as the server's. With
  ``--broker redis`` the limit is in the broker's own Redis, so it is checked
  inside the broker's publish script (one round trip, ``brokers/redis_limits.py``);
  with ``--broker memory`` it costs a round trip of its own (the ``limits`` library);
- ``moving`` (only with ``--only``): ``memory`` with ``strategy="moving-window"``.

Per repetition: one muted publisher (it does not receive its own events) and
one subscriber join the room; after a warm-up, publishes with ``--window`` in
flight for ``--duration`` s. Figures: acknowledged publishes/s, server CPU
per publish (/proc), and each step's overhead in µs of server CPU per
publish (the difference to the previous configuration's median).

``--against DIR`` (another checkout of the library): every configuration also
runs on DIR's library, as the kind ``<configuration>@<commit>`` alternated with
this tree's, and a second table compares the two per configuration (acked
publishes/s at least 0.95x, CPU per publish at most 1.05x).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import AsyncExitStack, nullcontext
from pathlib import Path
from typing import Any

from _client import publishers, subscribers
from _cpu import ForeignLoad
from _phases import throughput
from _report import text_table
from _reps import (
    add_against,
    against_header,
    against_report,
    alternate,
    counts,
    load_against,
    medians_of,
    quietest,
    run_all,
    server_for,
    setup_process,
    with_against,
    write_json,
)
from _runner import Pinning
from _servers import ServerProcess, library_state, running_server
from cluster import DEFAULT_REDIS_URL, RedisServer, can_pin, delete_keys, find_redis, pinned

KINDS = ("none", "middleware", "memory", "redis")  # the default run, each a step on the previous one
EXTRA = ("moving",)  # on request (--only): the memory limit with the exact, costlier strategy
PREV = {"middleware": "none", "memory": "middleware", "redis": "memory", "moving": "middleware"}
TITLES = {
    "none": "(a) no middleware, no rate limit",
    "middleware": "(b) 3 middleware",
    "memory": "(c) (b) + rate limit, memory://",
    "redis": "(d) (b) + rate limit, redis://",
    "moving": "(c') (b) + rate limit, memory://, moving-window",
}
RATE = "1000000/minute"
COMPARED = ("publishes_per_s", "cpu_us_per_publish", "server_util")  # --against's rows per configuration


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = p.add_argument
    add("--quick", action="store_true", help="1 rep, 2 s phases")
    add("--reps", type=int, default=None, help="repetitions per configuration (default 3; --quick 1)")
    add(
        "--only",
        default=None,
        help=f"comma-separated, of {','.join(KINDS + EXTRA)} (default {','.join(KINDS)})",
    )
    add("--duration", type=float, default=None, help="throughput phase seconds (5; --quick 2)")
    add("--window", type=int, default=16, help="publishes in flight")
    add("--redis-url", default=DEFAULT_REDIS_URL, help="Redis for the 'redis' configuration")
    add("--broker", choices=("redis", "memory"), default="redis",
        help="every configuration's broker (default redis: memory if no Redis is found)")
    add("--no-pin-redis", action="store_true", help="leave redis-server's CPU affinity alone")
    add("--noise-limit", type=float, default=0.15, help="foreign load (cores) that voids a rep")
    add("--retries", type=int, default=2, help="reruns of a rep voided by foreign load")
    add("--json", type=Path, help="write raw runs and medians here")
    add_against(p)
    a = p.parse_args(argv)
    a.reps = a.reps or (1 if a.quick else 3)
    a.duration = a.duration or (2.0 if a.quick else 5.0)
    a.only = [k.strip() for k in a.only.split(",")] if a.only else list(KINDS)
    unknown = set(a.only) - set(KINDS) - set(EXTRA)
    if unknown:
        p.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    a.against = load_against(a.against)
    return a


class Meter:
    """The server's CPU, plus redis-server's for the Redis configuration."""

    def __init__(self, server: ServerProcess, redis: RedisServer | None) -> None:
        self.server, self.redis = server, redis

    def cpu_seconds(self) -> float:
        return self.server.cpu_seconds() + (self.redis.cpu_seconds() if self.redis else 0.0)


async def run_one(
    kind: str, rep: int, args: argparse.Namespace, pins: Pinning, redis: RedisServer | None
) -> dict[str, Any]:
    config, repo = server_for(kind, args.against)
    env = {"BENCH_PIPELINE": config, "BENCH_RATE": RATE, "BENCH_BROKER": args.broker}
    use_redis = redis if config == "redis" or args.broker == "redis" else None
    if use_redis is not None:
        env |= {"BENCH_REDIS_URL": use_redis.url, "BENCH_REDIS_PREFIX": f"{use_redis.prefix}{rep}:"}
    pin_redis = use_redis is not None and not args.no_pin_redis and use_redis.pid is not None
    try:
        async with AsyncExitStack() as stack:
            stack.enter_context(
                pinned(use_redis.pid, pins.server) if pin_redis and use_redis else nullcontext()
            )
            server = await stack.enter_async_context(
                running_server("pipeline", pins.server, env=env, label=kind, repo=repo)
            )
            tally = await stack.enter_async_context(subscribers(server.url, 1, raw=True))
            pub = await stack.enter_async_context(publishers(server.url, 1))
            meter = Meter(server, use_redis)
            await throughput(meter, pub, tally, 1, 0.5, args.window, 64, timeout=20)  # warm-up

            def own() -> dict[int, float]:
                if pins.server is None or pins.client is None:
                    return {}
                return {pins.server: meter.cpu_seconds(), pins.client: time.process_time()}

            load = ForeignLoad(own())
            redis0 = use_redis.cpu_seconds() if use_redis else 0.0
            tp = await throughput(meter, pub, tally, 1, args.duration, args.window, 64, timeout=30)
            redis_cpu = (use_redis.cpu_seconds() if use_redis else 0.0) - redis0
            foreign = max([*load.cores(own()).values(), 0.0])
    finally:
        if use_redis is not None:
            delete_keys(use_redis.url, f"{use_redis.prefix}{rep}:")
    per_s = tp.published / tp.seconds
    flags = ("" if tp.complete else " INCOMPLETE") + (f" errors={tp.errors}" if tp.errors else "")
    redis_note = f", redis-server {redis_cpu / tp.seconds:.0%}" if use_redis else ""
    print(
        f"    {per_s:,.0f} acked publishes/s, {tp.server_cpu_us_per_msg:.2f} µs server CPU/publish "
        f"(server {tp.server_util:.0%} CPU{redis_note}, load-gen {tp.client_util:.0%}){flags}; "
        f"foreign load {foreign:.0%}",
        flush=True,
    )
    return {
        "publishes_per_s": per_s,
        "cpu_us_per_publish": tp.server_cpu_us_per_msg,
        "server_util": tp.server_util,
        "redis_util": redis_cpu / tp.seconds,
        "client_util": tp.client_util,
        "foreign_load": foreign,
        "complete": float(tp.complete and not tp.errors),
        "_throughput": tp.__dict__,
    }


def report(med: dict[str, dict[str, float]]) -> str:
    rows = [("configuration", "acked publishes/s", "server CPU µs/publish", "step overhead µs", "server CPU")]
    for kind in KINDS + EXTRA:
        m = med.get(kind)
        if m is None:
            continue
        cpu = m["cpu_us_per_publish"]
        prev = med.get(PREV.get(kind, ""), {}).get("cpu_us_per_publish")
        step = "" if prev is None else f"{cpu - prev:+.2f} vs {TITLES[PREV[kind]][:3]}"
        util = f"{m['server_util']:.0%}" + (f" (redis {m['redis_util']:.0%})" if m.get("redis_util") else "")
        rows.append((TITLES[kind], f"{m['publishes_per_s']:,.0f}", f"{cpu:.2f}", step, util))
    return text_table(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pins, split = setup_process()
    redis: RedisServer | None = None
    if "redis" in args.only or args.broker == "redis":
        try:
            redis = find_redis(args.redis_url)
        except Exception as exc:
            print(f"no Redis at {args.redis_url} ({exc!r}): skipping the 'redis' configuration"
                  + (", the memory broker for the others" if args.broker == "redis" else ""), flush=True)
            args.broker = "memory"
        if redis is not None and redis.pid is not None and not can_pin(redis.pid):
            redis.pid = None if args.no_pin_redis else redis.pid
            args.no_pin_redis = True
    library = library_state()
    print(f"machine: {split}; library at {library['commit']}, newest file {library['newest_file']}")
    if redis is not None:
        pin_note = "pinned to CPU 0 during its repetitions" if not args.no_pin_redis else "not pinned"
        print(f"{redis.describe()}; {pin_note}; its CPU counts as the server's")
    print(
        f"reps={args.reps}; {args.duration:g} s per phase, window {args.window}, one muted publisher, "
        f"one subscriber; rate limit {RATE}; {args.broker} broker",
        flush=True,
    )
    for line in against_header(args.against):
        print(line, flush=True)
    configs = [k for k in args.only if k != "redis" or redis is not None]
    kinds = with_against(configs, args.against, configs)

    def title(kind: str) -> str:
        config, _, commit = kind.partition("@")
        return TITLES[config] + (f" @{commit}" if commit else "")

    async def repetition(kind: str, rep: int) -> dict[str, Any] | None:
        async def attempt(n: int) -> dict[str, Any]:
            return await asyncio.wait_for(run_one(kind, rep * 10 + n, args, pins, redis), args.duration + 90)

        return await quietest(kind, attempt, args, pins, foreign=lambda run: float(run["foreign_load"]))

    try:
        runs = run_all(alternate(kinds, args.reps, repetition, title=title))
    finally:
        if redis is not None:
            delete_keys(redis.url, redis.prefix)
    if runs is None:
        return 130
    med = medians_of(runs)
    print(f"\nmedians over the repetitions ({counts(runs)}); step overhead = CPU/publish minus the named "
          "row's:")
    print(report(med))
    compared = against_report(med, args.against, kinds, args.noise_limit, COMPARED,
                              lambda k: f"{TITLES[k].split()[0]} {k}")
    write_json(args.json, args, cpu_split=split, library=library, runs=runs, medians=med, **compared)
    return 0 if med else 1

if __name__ == "__main__":
    sys.exit(main())
