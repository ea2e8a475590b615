"""Where the Redis broker's hop goes: one publish, stage by stage, against redis-py's floor.

    python benchmarks/redis_hop.py [--count 2000] [--rate 100] [--redis-url redis://...]
                                   [--json out.json]

One process (pinned to the first CPU, with ``redis-server``'s threads: the
cluster benchmark's CPU split) runs a ``RedisBroker`` that subscribes to a
room and publishes ``--count`` events at ``--rate`` per second, one at a
time, timing each stage of every publish:

- ``queued``: ``submit`` until the ordered publisher sends the pipeline;
- ``script round trip``: the pipeline's send until Redis's answer (the Lua
  publish script, redis-py's packing and parsing, the loopback);
- ``pub/sub arrival``: ``submit`` until this node's subscriber reads the
  event from its pub/sub connection (what every other node waits for);
- ``subscriber``: from that read until the event reaches the sink (gap
  check, decoding);
- ``submit to sink``: the whole hop.

Then the floor, with the same client library and Redis: a bare ``PUBLISH``
from one connection read by a pub/sub ``get_message`` loop on another
(``bare publish to pub/sub``), and a bare ``EVALSHA`` of a script returning
1 (``bare script round trip``). ``INFO commandstats`` gives Redis's own time
per publish script, at ``--rate`` and with the same publishes sent back to
back first (Redis and the node busy). Medians and p99 in µs; the first 10%
are warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from dialogue_fastapi.brokers.redis import RedisBroker
from dialogue_fastapi.core.types import EventMessage

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # the tests use database 15
STAGES = ("queued", "script round trip", "answer to caller", "pub/sub arrival", "subscriber",
          "submit to sink")


def pin_redis(url: str, cpu: int) -> list[str]:
    """Pin the threads of the redis-server at ``url`` to ``cpu``; return what to restore
    (``taskset`` masks)."""
    from redis import Redis

    client = Redis.from_url(url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    restore = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        mask = subprocess.run(["taskset", "-p", task.name], capture_output=True,
                              text=True).stdout.rsplit(" ", 1)[-1].strip()
        restore.append(f"{task.name}:{mask}")
        subprocess.run(["taskset", "-p", "-c", str(cpu), task.name], capture_output=True)
    return restore


def unpin(restore: list[str]) -> None:
    for item in restore:
        task, mask = item.split(":")
        subprocess.run(["taskset", "-p", mask, task], capture_output=True)


def summary(values: list[float]) -> dict[str, float]:
    kept = sorted(values[len(values) // 10:])
    return {"p50": statistics.median(kept), "p99": kept[min(len(kept) - 1, int(len(kept) * 0.99))]}


async def broker_hop(url: str, count: int, rate: float) -> dict[str, list[float]]:
    broker = RedisBroker(f"{url}?prefix=hop{secrets.token_hex(3)}:")
    sunk: dict[int, int] = {}
    read: dict[int, int] = {}

    def on_event(message: EventMessage) -> int:
        sunk[message.seq] = time.perf_counter_ns()
        return 1

    async def on_control(_: dict[str, Any]) -> None:
        return None

    await broker.start(on_event, on_control)
    publisher, subscriber = broker._publisher, broker._subscriber
    assert publisher is not None and subscriber is not None
    sent: dict[int, tuple[int, int]] = {}  # id(future) -> (sent, answered)
    send, handle = publisher._send, subscriber._handle  # type: ignore[attr-defined]

    async def timed_send(batch: list[Any]) -> list[Any]:
        start = time.perf_counter_ns()
        answers = await send(batch)
        done = time.perf_counter_ns()
        for _, _, future in batch:
            sent[id(future)] = (start, done)
        return answers

    async def timed_handle(message: dict[str, Any]) -> None:
        if message["type"] == "message" and isinstance(message["data"], bytes):
            seq = message["data"].split(b":", 1)[0]
            if seq.isdigit():
                read.setdefault(int(seq), time.perf_counter_ns())
        await handle(message)

    publisher._send = timed_send  # type: ignore[method-assign]
    subscriber._handle = timed_handle  # type: ignore[attr-defined]
    await broker.subscribe("hop")
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    try:
        for i in range(count):
            message = EventMessage(room="hop", event="e", data={"i": i, "text": "x" * 100},
                                   from_="bench")
            start = time.perf_counter_ns()
            pending = broker.submit(message, 100, 0)
            future = publisher._queue[-1][2]
            published = await pending
            answered = time.perf_counter_ns()
            seq = published.message.seq
            while seq not in sunk:
                await asyncio.sleep(0)
            went, came = sent.pop(id(future))
            for name, value in zip(STAGES, (went - start, came - went, answered - came,
                                            read[seq] - start, sunk[seq] - read[seq],
                                            sunk[seq] - start), strict=True):
                stages[name].append(value / 1000)
            await asyncio.sleep(1 / rate if rate > 0 else 0)
    finally:
        await broker.stop()
    return stages


async def floor(url: str, count: int, rate: float) -> dict[str, list[float]]:
    from redis.asyncio import Redis

    client, reader = Redis.from_url(url), Redis.from_url(url)
    pubsub = reader.pubsub()
    await pubsub.subscribe("hop-floor")
    await pubsub.get_message(timeout=1)
    sha = await client.script_load("return 1")
    stages: dict[str, list[float]] = {"bare publish to pub/sub": [], "bare script round trip": []}
    try:
        for i in range(count):
            start = time.perf_counter_ns()
            await client.publish("hop-floor", b"%d" % i)
            while (await pubsub.get_message(timeout=1)) is None:
                pass
            stages["bare publish to pub/sub"].append((time.perf_counter_ns() - start) / 1000)
            start = time.perf_counter_ns()
            await client.evalsha(sha, 0)
            stages["bare script round trip"].append((time.perf_counter_ns() - start) / 1000)
            await asyncio.sleep(1 / rate)
    finally:
        await pubsub.aclose()
        await client.aclose()
        await reader.aclose()
    return stages


async def script_usec(url: str) -> dict[str, float]:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name: float(value["usec_per_call"]) for name, value in stats.items()
            if name in ("cmdstat_evalsha", "cmdstat_publish")}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from redis.asyncio import Redis

    async def reset() -> None:
        admin = Redis.from_url(args.redis_url)
        await admin.config_resetstat()
        await admin.aclose()

    await reset()
    await broker_hop(args.redis_url, args.count, 0)  # back to back: Redis and the node busy
    busy = await script_usec(args.redis_url)
    await reset()
    hop = await broker_hop(args.redis_url, args.count, args.rate)
    redis_side = await script_usec(args.redis_url)
    hop.update(await floor(args.redis_url, args.count, args.rate))
    return {"stages": {name: summary(values) for name, values in hop.items()},
            "redis_usec_per_call": redis_side, "redis_usec_per_call_back_to_back": busy}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    restore = pin_redis(args.redis_url, cpu)
    try:
        try:
            import uvloop

            result = uvloop.run(main(args))
        except ImportError:
            result = asyncio.run(main(args))
    finally:
        unpin(restore)
    print(f"{args.count} publishes at {args.rate:g}/s; this process and redis-server on CPU {cpu}")
    print(f"{'stage':28s} {'p50 µs':>9s} {'p99 µs':>9s}")
    for name, figures in result["stages"].items():
        print(f"{name:28s} {figures['p50']:9.1f} {figures['p99']:9.1f}")
    for name, usec in result["redis_usec_per_call"].items():
        print(f"redis {name.removeprefix('cmdstat_'):22s} {usec:9.1f} µs per call (Redis's own time)")
    for name, usec in result["redis_usec_per_call_back_to_back"].items():
        print(f"redis {name.removeprefix('cmdstat_'):22s} {usec:9.1f} µs per call, publishes back to back")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    run()
