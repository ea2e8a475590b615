"""Distinct room-family instances, one after another: does the node give the memory back?

Clients join ``doc:0`` .. ``doc:N-1`` (join, publish one event, leave), spread over a few
connections so the run is short; the server's ``idle_ttl`` is short. RSS is read from /proc
after a warm-up (once its instances were evicted), at the peak, and once every instance
has been evicted again::

    python benchmarks/instances.py              # 100,000 instances
    python benchmarks/instances.py --count 20000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _servers import running_server

from dialogue_fastapi.testing import WsProbe


async def churn(url: str, first: int, count: int, connections: int) -> None:
    async def one(lane: int) -> None:
        probe = await WsProbe.open(url + "?user=bench")
        try:
            for n in range(first + lane, first + count, connections):
                room = f"doc:{n}"
                await probe.request("join", room=room)
                await probe.request("publish", room=room, event="edit", data={"n": n})
                await probe.request("leave", room=room)
        finally:
            await probe.close()

    await asyncio.gather(*(one(lane) for lane in range(connections)))


async def evicted(http: httpx.AsyncClient, total: int, timeout: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, int] = (await http.get("/instances")).json()
        if (state["held"] == 0 and state["evicted"] >= total) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--warm-up", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--idle-ttl", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = {"BENCH_IDLE_TTL": str(args.idle_ttl)}
    async with running_server("instances", cpu=0, env=env) as server:
        url, base = server.url, f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base) as http:
            started = server.rss_kib()
            await churn(url, 0, args.warm_up, args.connections)
            await evicted(http, args.warm_up)
            before = server.rss_kib()
            began, peak = time.monotonic(), before
            step = max(args.count // 20, 1)
            for first in range(args.warm_up, args.warm_up + args.count, step):
                await churn(url, first, min(step, args.warm_up + args.count - first),
                            args.connections)
                peak = max(peak, server.rss_kib())
            took = time.monotonic() - began
            state = await evicted(http, args.warm_up + args.count)
            after = server.rss_kib()
    result = {
        "instances": args.count, "idle_ttl_s": args.idle_ttl, "seconds": round(took, 1),
        "joins_per_s": round(args.count / took), "rss_kib_at_start": started,
        "rss_kib_after_warm_up": before, "rss_kib_peak": peak, "rss_kib_after": after,
        "growth": round(after / before - 1, 4), "held_after": state["held"],
        "evicted": state["evicted"],
    }
    print(json.dumps(result, indent=2))
    print(f"RSS after {args.count} distinct instances: {after} KiB vs {before} KiB after the "
          f"warm-up ({result['growth']:+.1%}; target within +10%), peak {peak} KiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
