"""What one publish-limit check costs with Redis storage, against a bare redis-py call.

    python benchmarks/limiter_check.py [--calls 3000] [--redis-url redis://127.0.0.1:6379/14]

In one process and one event loop: ``EventLimiter.check`` with
``RateLimit(default="1000000/minute", storage=<redis>)`` (one ``hit``, a Lua
script in Redis), then a bare ``EVALSHA`` of a one-line script through redis-py's
asyncio client, each ``--calls`` times after a warm-up. Prints client CPU and
wall time per call; the difference is what the limiter adds to a round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aredis
from cluster import DEFAULT_REDIS_URL, delete_keys

from dialogue_fastapi.core.config import RateLimit, RoomConfig
from dialogue_fastapi.limits.events import EventLimiter, Sender
from dialogue_fastapi.rooms.registry import Room


async def per_call(call: Callable[[], Awaitable[object]], calls: int) -> tuple[float, float]:
    for _ in range(200):
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    return ((time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6)


async def run(calls: int, url: str) -> None:
    prefix = f"dialogue-bench-{secrets.token_hex(4)}"
    limiter = EventLimiter(RateLimit(default="1000000/minute", storage=url, prefix=prefix))
    room, sender = Room("bench", RoomConfig(name="bench")), Sender("u", None, None)
    client = aredis.Redis.from_url(url)
    try:
        cpu, wall = await per_call(lambda: limiter.check(room, "m", sender), calls)
        print(f"EventLimiter.check (Redis): {cpu:6.1f} us CPU, {wall:6.1f} us wall per call")
        sha = await client.script_load("return redis.call('incr', KEYS[1])")
        key = f"{prefix}:bare"
        cpu, wall = await per_call(lambda: client.evalsha(sha, 1, key), calls)
        print(f"bare EVALSHA (redis-py):    {cpu:6.1f} us CPU, {wall:6.1f} us wall per call")
    finally:
        await client.aclose()
        delete_keys(url, prefix)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    a = p.parse_args()
    asyncio.run(run(a.calls, a.redis_url))


if __name__ == "__main__":
    main()
