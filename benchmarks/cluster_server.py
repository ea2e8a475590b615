"""One node of the cluster measured by ``cluster.py``: ``dialogue_server.py`` on the Redis broker.

The same app (anonymous rooms, library defaults) with a ``RedisBroker`` built
from ``BENCH_REDIS_URL`` and ``BENCH_REDIS_PREFIX`` (``cluster.py`` gives each
repetition its own prefix and deletes its keys afterwards), or, when
``BENCH_REDIS_URL`` is a ``redis+cluster://host:port,...?prefix=...`` URL, a
``RedisClusterBroker`` (the prefix in the URL; ``cluster.py``'s ``shards`` kind).
Every node started with the same values shares the rooms through Redis.
``BENCH_ROOMS``: the rooms, comma-separated (default ``bench``).

Run alone: ``BENCH_REDIS_URL=redis://127.0.0.1:6379/14 BENCH_REDIS_PREFIX=bench: \\
uvicorn cluster_server:app --app-dir benchmarks --ws websockets-sansio --port 8001``.
"""

import os

from fastapi import FastAPI

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.brokers.base import Broker
from dialogue_fastapi.brokers.redis import RedisBroker

URL = os.environ["BENCH_REDIS_URL"]
broker: Broker
if URL.startswith("redis+cluster://"):
    from dialogue_fastapi.brokers.redis_cluster import RedisClusterBroker

    broker = RedisClusterBroker(URL)
else:
    broker = RedisBroker(URL, prefix=os.environ["BENCH_REDIS_PREFIX"])
ROOMS = os.environ.get("BENCH_ROOMS", "bench").split(",")
dialogue = Dialogue(rooms={room: RoomConfig(name=room) for room in ROOMS}, allow_anonymous=True,
                    broker=broker)
app = FastAPI()
app.include_router(dialogue.router)
