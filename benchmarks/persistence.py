"""Persistence benchmark: appends to PostgreSQL, batched vs one insert per event, and
the fan-out benchmark with persistence off and on, in one run.

    python benchmarks/persistence.py [--url postgresql+asyncpg://...] [--events 50000]
                                     [--fanout-args "--quick"] [--skip-fanout] [--json out.json]

1. Appends (this process, one event loop, the SQL store on ``--url``, its own table
   prefix, dropped afterwards):
   - one insert per event: ``store.append([event])``, one transaction each;
   - batched: the write-behind queue as the server uses it (``write_batch_size``
     500): every event reserved and queued, timed until the last one is committed;
   - executemany only: ``store.append(batch)`` with 500 events per call.
2. Fan-out: ``benchmarks/fanout.py --only dialogue <fanout-args>`` twice, persistence
   off, then on (``DIALOGUE_DATABASE_URL=<url>``: every event goes through the
   write-behind queue into PostgreSQL), and the ratio of delivered messages/s.
   PostgreSQL runs on the same machine, so its CPU time is part of the "on" cost.

Targets (issue 4): >= 10,000 events/s appended to PostgreSQL; fan-out with
persistence on >= 0.8x off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from dialogue_fastapi.core.types import EventMessage  # noqa: E402
from dialogue_fastapi.stores.sql import SqlStore  # noqa: E402
from dialogue_fastapi.stores.write_behind import WriteBehind  # noqa: E402

DEFAULT_URL = os.environ.get("DIALOGUE_TEST_DATABASE_URL",
                             "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def events(room: str, count: int, start: int = 1) -> list[EventMessage]:
    data = {"text": "a chat message of a typical size, about eighty characters long....."}
    now = int(time.time() * 1000)
    return [EventMessage(room, "message", data, "alice", now, seq) for seq in range(start, start + count)]


async def drop(store: SqlStore) -> None:
    from sqlalchemy import text

    async with store.engine.begin() as conn:
        for name in reversed(store.tables.names()):
            await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


async def one_by_one(store: SqlStore, count: int) -> float:
    started = time.perf_counter()
    for message in events("single", count):
        await store.append([message], {"single": "e"})
    return count / (time.perf_counter() - started)


async def executemany(store: SqlStore, count: int, batch: int = 500) -> float:
    batch_events = events("many", count)
    started = time.perf_counter()
    for i in range(0, count, batch):
        await store.append(batch_events[i:i + batch], {"many": "e"})
    return count / (time.perf_counter() - started)


async def write_behind(store: SqlStore, count: int) -> tuple[float, float]:
    async def epoch_of(_: str) -> str:
        return "e"

    queue = WriteBehind(store, epoch_of, batch_size=500, interval=0.05, max_pending=count + 1)
    await queue.start()
    started = time.perf_counter()
    for message in events("queued", count):
        queue.reserve(False)
        queue.put(message, False)
        if message.seq % 1000 == 0:
            await asyncio.sleep(0)  # publishers yield between events; so does this loop
    await queue.flush()
    elapsed = time.perf_counter() - started
    await queue.stop()
    assert await store.count_events("queued") == count
    batches = [n for room, n in store.batches if room == "queued"]
    return count / elapsed, count / max(len(batches), 1)


class CountingStore(SqlStore):
    """Records (room, size) of every append."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[str, int]] = []

    async def append(self, messages: list[EventMessage], epochs: Any) -> None:
        if messages:
            self.batches.append((messages[0].room, len(messages)))
        await super().append(messages, epochs)


async def appends(url: str, count: int) -> dict[str, float]:
    store = CountingStore(url, table_prefix=f"bench{secrets.token_hex(3)}_")
    await store.start()
    try:
        single = await one_by_one(store, min(count, 5_000))
        many = await executemany(store, count)
        queued, mean_batch = await write_behind(store, count)
    finally:
        await drop(store)
        await store.stop()
    return {"one_insert_per_event": single, "executemany_500": many,
            "write_behind": queued, "write_behind_mean_batch": mean_batch}


def fanout(args: argparse.Namespace, persistence: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "DIALOGUE_DATABASE_URL"}
    if persistence is not None:
        env["DIALOGUE_DATABASE_URL"] = persistence
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        report = Path(out.name)
    command = [sys.executable, str(BENCH_DIR / "fanout.py"), "--only", "dialogue",
               *shlex.split(args.fanout_args), "--json", str(report)]
    print(f"\n$ {'DIALOGUE_DATABASE_URL=... ' if persistence else ''}{shlex.join(command[1:])}",
          flush=True)
    try:
        subprocess.run(command, env=env, check=True)
        medians: dict[str, float] = orjson.loads(report.read_bytes())["medians"]["dialogue"]
    finally:
        report.unlink(missing_ok=True)
    return medians


async def default_tables_exist(url: str) -> bool:
    """Whether ``dialogue_events`` exists (then the benchmark leaves the tables alone)."""
    from sqlalchemy import inspect

    from dialogue_fastapi.stores.sql_engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await engine.dispose()
    return "dialogue_events" in names


async def drop_default_tables(url: str) -> None:
    from sqlalchemy import text

    from dialogue_fastapi.stores.sql_engine import create_engine
    from dialogue_fastapi.stores.sql_schema import build_tables

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for name in reversed(build_tables().names()):
                await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    finally:
        await engine.dispose()


def report(appended: dict[str, float], off: dict[str, float], on: dict[str, float]) -> list[str]:
    lines = ["", "appends to PostgreSQL (events/s):"]
    for key in ("one_insert_per_event", "executemany_500", "write_behind"):
        lines.append(f"  {key.replace('_', ' '):<24} {appended[key]:>10,.0f}")
    lines.append(f"  write-behind mean batch  {appended['write_behind_mean_batch']:>10,.0f} events")
    ok = appended["write_behind"] >= 10_000
    lines.append(f"  target >= 10,000/s through the write-behind queue: {'met' if ok else 'NOT met'}")
    for key in sorted(k for k in off if k.startswith("deliv_per_s@")):
        ratio = on.get(key, float("nan")) / off[key]
        n = key.split("@")[1]
        lines.append(f"fan-out N={n}: off {off[key]:,.0f} msg/s, on {on.get(key, float('nan')):,.0f} "
                     f"msg/s: {ratio:.2f}x (target >= 0.8x: {'met' if ratio >= 0.8 else 'NOT met'})")
        for metric in ("p50_ms", "p99_ms", "cpu_us_per_msg"):
            k = f"{metric}@{n}"
            if k in off and k in on:
                lines.append(f"  {metric:<15} off {off[k]:.2f}  on {on[k]:.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL URL (postgresql+asyncpg://...)")
    p.add_argument("--events", type=int, default=50_000, help="events per append measurement")
    p.add_argument("--fanout-args", default="--quick", help="arguments for fanout.py")
    p.add_argument("--skip-fanout", action="store_true", help="appends only")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    appended = asyncio.run(appends(args.url, args.events))
    off: dict[str, float] = {}
    on: dict[str, float] = {}
    if not args.skip_fanout:
        existed = asyncio.run(default_tables_exist(args.url))
        try:
            off = fanout(args, None)
            on = fanout(args, args.url)
        finally:
            if not existed:
                asyncio.run(drop_default_tables(args.url))
    print("\n".join(report(appended, off, on)))
    if args.json:
        args.json.write_bytes(orjson.dumps({"appends": appended, "fanout_off": off, "fanout_on": on},
                                           option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
