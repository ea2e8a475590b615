"""Flood benchmark: does a connection flooding publishes starve another one's pings?

    python benchmarks/flood.py [--quick] [--reps 3] [--count 10000] [--only none,limit] [--json out.json]

One dialogue server (``pipeline_server.py``, a ``uvicorn --ws
websockets-sansio`` subprocess pinned to CPU 0) per configuration and
repetition; this process, the load generator (one uvloop event loop), is
pinned to CPU 1. Configurations: ``none`` (no rate limit) and ``limit``
(``RateLimit(default=--rate)``, default ``1000/second``, memory storage).

Two connections: the flooder joins the room, unsubscribes from the event (it
reads only the replies, counting accepted and refused publishes) and sends
``--count`` publishes as fast as the socket takes them, never waiting for a
reply; the pinger, already sending ``{"op": "ping", "id": ...}`` every
``--interval`` ms (10), keeps doing so until every publish is answered. The
figures are the round trips of the pings sent during the flood: p50, p99,
max, how many went over 100 ms, and the flood's accepted/refused counts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson
from _client import EVENT, ROOM, TEXT, Publisher, close_all, join, mute, open_connection
from _cpu import ForeignLoad
from _phases import percentile
from _report import text_table
from _reps import alternate, counts, medians_of, quietest, run_all, setup_process, write_json
from _runner import Pinning
from _servers import library_state, running_server
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

KINDS = ("none", "limit")
SLOW_MS = 100.0  # what the issue asks: pings answered within 100 ms
CHUNK = 1  # publishes sent before the flooder lets the event loop run (its reply reader, the pinger)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = p.add_argument
    add("--quick", action="store_true", help="1 rep")
    add("--reps", type=int, default=None, help="repetitions per configuration (default 3; --quick 1)")
    add("--only", default=None, help=f"comma-separated configurations (default {','.join(KINDS)})")
    add("--count", type=int, default=10_000, help="publishes in the flood")
    add("--rate", default="1000/second", help="the 'limit' configuration's RateLimit(default=...)")
    add("--window", type=int, default=0, help="most unanswered publishes (0: no limit, the flood)")
    add("--interval", type=float, default=10.0, help="ms between pings")
    add("--noise-limit", type=float, default=0.15, help="foreign load (cores) reported as noisy")
    add("--retries", type=int, default=0, help="reruns of a rep with more foreign load than that")
    add("--json", type=Path, help="write raw runs and medians here")
    a = p.parse_args(argv)
    a.reps = a.reps or (1 if a.quick else 3)
    a.only = [k.strip() for k in a.only.split(",")] if a.only else list(KINDS)
    if set(a.only) - set(KINDS):
        p.error(f"configurations are {', '.join(KINDS)}")
    return a


class Pinger:
    """Sends a ping every ``interval`` s and records each reply's round trip."""

    def __init__(self, ws: ClientConnection, interval: float) -> None:
        self.ws, self.interval = ws, interval
        self.sent: dict[int, float] = {}  # id -> perf_counter at send
        self.rtt: dict[int, float] = {}  # id -> seconds
        self.late: list[float] = []  # how late each ping left against its schedule (load-gen delay)
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._read())]

    async def _send(self) -> None:
        t0 = time.perf_counter()
        for i in itertools.count(1):
            due = t0 + i * self.interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            self.late.append(now - due)
            self.sent[i] = now
            await self.ws.send(orjson.dumps({"op": "ping", "id": i}), text=True)

    async def _read(self) -> None:
        try:
            while True:
                msg = orjson.loads(await self.ws.recv(decode=False))
                i = msg.get("id")
                if isinstance(i, int) and i in self.sent:
                    self.rtt[i] = time.perf_counter() - self.sent[i]
        except ConnectionClosed:
            return

    def between(self, t0: float, t1: float) -> list[float]:
        """Round trips (s) of the pings sent in [t0, t1]; unanswered ones count as infinite."""
        return [self.rtt.get(i, float("inf")) for i, at in self.sent.items() if t0 <= at <= t1]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def flood(pub: Publisher, count: int, window: int) -> None:
    """Send ``count`` publishes back to back (``window`` > 0: at most that many unanswered);
    yield to the loop every ``CHUNK``; stop if the server closes the connection."""
    ws, ids = pub.ws, pub.ids
    pub.window = asyncio.Semaphore(window if window > 0 else count)
    with suppress(ConnectionClosed):
        for i in range(count):
            await pub.window.acquire()
            data = {"t": time.time_ns(), "i": i, "text": TEXT}
            cmd = {"op": "publish", "id": next(ids), "room": ROOM, "event": EVENT, "data": data}
            await ws.send(orjson.dumps(cmd), text=True)
            pub.sent += 1
            if i % CHUNK == CHUNK - 1:
                await asyncio.sleep(0)


async def run_one(kind: str, args: argparse.Namespace, pins: Pinning) -> dict[str, Any]:
    env = {"BENCH_PIPELINE": kind, "BENCH_RATE": args.rate}
    async with running_server("pipeline", pins.server, env=env, label=kind) as server:
        ws = await open_connection(server.url)
        await join(ws)
        await mute(ws)
        pub = Publisher(ws)
        ping_ws = await open_connection(server.url)
        pinger = Pinger(ping_ws, args.interval / 1000)
        try:
            await asyncio.sleep(0.5)  # pings before the flood: the idle round trip
            idle = [x for x in pinger.rtt.values()]

            def own() -> dict[int, float]:
                if pins.server is None or pins.client is None:
                    return {}
                return {pins.server: server.cpu_seconds(), pins.client: time.process_time()}

            load = ForeignLoad(own())
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            await flood(pub, args.count, args.window)
            t_sent = time.perf_counter()
            async with asyncio.timeout(120):
                while pub.acked < args.count and ws.close_code is None:
                    await asyncio.sleep(0.001)
            closed = ws.close_code  # the server's close (4009), before ours
            t1, cpu1 = time.perf_counter(), server.cpu_seconds()
            foreign = max([*load.cores(own()).values(), 0.0])
            await asyncio.sleep(0.2)  # the last pings' replies
            during = sorted(pinger.between(t0, t1))
            late = sorted(pinger.late[-len(during) :]) if during else []
        finally:
            await pinger.aclose()
            await pub.aclose()
            await close_all([ping_ws])
    refused = sum(pub.errors.values())
    ms = [x * 1000 for x in during]
    out = {
        "flood_s": t1 - t0,
        "send_s": t_sent - t0,
        "sent": float(pub.sent),
        "answered": float(pub.acked),
        "flooder_closed": float(closed or 0),
        "accepted": float(pub.acked - refused),
        "refused": float(refused),
        "pings": float(len(ms)),
        "ping_idle_p50_ms": percentile(sorted(x * 1000 for x in idle), 0.5),  # type: ignore[arg-type]
        "ping_p50_ms": percentile(ms, 0.5),  # type: ignore[arg-type]
        "ping_p99_ms": percentile(ms, 0.99),  # type: ignore[arg-type]
        "ping_max_ms": max(ms, default=float("nan")),
        "pings_over_100ms": float(sum(x > SLOW_MS for x in ms)),
        "ping_send_late_max_ms": max(late, default=0.0) * 1000,
        "server_util": (cpu1 - cpu0) / (t1 - t0),
        "foreign_load": foreign,
        "_errors": dict(pub.errors),
        "_flooder_closed": closed,
    }
    print(
        f"    {pub.sent:,} publishes sent in {out['send_s']:.2f} s, {pub.acked:,} answered after "
        f"{out['flood_s']:.2f} s (server {out['server_util']:.0%} CPU"
        f"{f'; flooder closed {closed}' if closed else ''}): {int(out['accepted']):,} accepted, "
        f"{refused:,} refused {dict(pub.errors) or ''}; {len(ms)} pings during it: p50 "
        f"{out['ping_p50_ms']:.2f} ms, p99 {out['ping_p99_ms']:.2f} ms, max {out['ping_max_ms']:.2f} ms "
        f"(idle p50 {out['ping_idle_p50_ms']:.2f} ms; {int(out['pings_over_100ms'])} over {SLOW_MS:g} ms; "
        f"pinger up to {out['ping_send_late_max_ms']:.1f} ms late); foreign load {foreign:.0%}",
        flush=True,
    )
    return out


ROWS = (
    ("sent", "publishes sent before the flooder was closed / all", "{:,.0f}"),
    ("answered", "publishes answered", "{:,.0f}"),
    ("accepted", "publishes accepted", "{:,.0f}"),
    ("refused", "publishes refused (RATE_LIMITED)", "{:,.0f}"),
    ("flooder_closed", "flooder closed by the server (code; 0: not closed)", "{:.0f}"),
    ("flood_s", "flood: first sent to last answered, s", "{:.2f}"),
    ("server_util", "server CPU utilisation during the flood", "{:.0%}"),
    ("pings", "pings during the flood", "{:.0f}"),
    ("ping_idle_p50_ms", "ping p50 before the flood, ms", "{:.2f}"),
    ("ping_p50_ms", "ping p50 during the flood, ms", "{:.2f}"),
    ("ping_p99_ms", "ping p99 during the flood, ms", "{:.2f}"),
    ("ping_max_ms", "ping max during the flood, ms", "{:.2f}"),
    ("pings_over_100ms", "pings over 100 ms", "{:.0f}"),
    ("foreign_load", "foreign CPU load (cores)", "{:.2f}"),
)


def report(med: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    heads = {"none": "no limit", "limit": args.rate}
    kinds = [k for k in KINDS if k in med]
    rows = [("metric", *(heads[k] for k in kinds))]
    for key, label, fmt in ROWS:
        rows.append((label, *(fmt.format(med[k][key]) if key in med[k] else "n/a" for k in kinds)))
    return text_table(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pins, split = setup_process()
    library = library_state()
    print(f"machine: {split}; library at {library['commit']}, newest file {library['newest_file']}")
    print(
        f"reps={args.reps}; window {args.window or 'unbounded'}; flood of {args.count:,} publishes on one "
        f"connection (unsubscribed from its "
        f"event, no other subscriber); a second connection pings every {args.interval:g} ms",
        flush=True,
    )

    def title(kind: str) -> str:
        return "no rate limit" if kind == "none" else f"RateLimit(default={args.rate!r})"

    async def repetition(kind: str, _rep: int) -> dict[str, Any] | None:
        return await quietest(kind, lambda _n: run_one(kind, args, pins), args, pins,
                              foreign=lambda run: float(run["foreign_load"]))

    runs = run_all(alternate(args.only, args.reps, repetition, title))
    if runs is None:
        return 130
    med = medians_of(runs)
    print(f"\nmedians over the repetitions ({counts(runs)}):")
    print(report(med, args))
    write_json(args.json, args, cpu_split=split, library=library, runs=runs, medians=med)
    return 0 if med else 1

if __name__ == "__main__":
    sys.exit(main())
