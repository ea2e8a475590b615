"""How long a node takes to write its presence back after Redis lost it.

    python benchmarks/presence_writeback.py [--connections 5000] [--redis-url redis://127.0.0.1:6379/14]

One Redis broker (a fresh key prefix, deleted afterwards) registers N connections,
each in two rooms (one of 50, and one room holding all of them), then times
``RedisPresence.reassert(clear=True)``: what the heartbeat does when the node finds
that Redis lost its presence (restart) or that leaves could not be written (outage).
It must stay well under ``node_ttl`` (10 s by default): the heartbeat waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any

from cluster import DEFAULT_REDIS_URL, delete_keys

from dialogue_fastapi.brokers.redis import RedisBroker
from dialogue_fastapi.core.types import PresenceEntry


async def run(connections: int, url: str) -> None:
    prefix = f"dialogue-bench-{secrets.token_hex(4)}:"
    broker = RedisBroker(url, prefix=prefix, node_ttl=60)

    async def ignore(_: Any) -> None:
        return None

    await broker.start(ignore, ignore)
    try:
        presence = broker.presence
        entries = [PresenceEntry(f"u{i}", f"c{i}") for i in range(connections)]
        await asyncio.gather(*(presence.connect(e) for e in entries))
        await asyncio.gather(*(presence.join(f"room{i % 50}", e, None) for i, e in enumerate(entries)))
        await asyncio.gather(*(presence.join("all", e, None) for e in entries))
        started = time.perf_counter()
        count = await presence.reassert(clear=True)
        took = time.perf_counter() - started
        size = await presence.count("all")
        print(f"wrote back {count:,} connections (2 rooms each) in {took * 1000:,.0f} ms; "
              f"room 'all' holds {size:,}")
    finally:
        await broker.stop()
        delete_keys(url, prefix)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    a = p.parse_args()
    asyncio.run(run(a.connections, a.redis_url))


if __name__ == "__main__":
    main()
