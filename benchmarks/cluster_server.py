"""One node of the cluster measured by ``cluster.py``: ``dialogue_server.py`` on the Redis broker.

The same app (one anonymous room, library defaults) with a ``RedisBroker``
built from ``BENCH_REDIS_URL`` and ``BENCH_REDIS_PREFIX`` (``cluster.py`` gives
each repetition its own prefix and deletes its keys afterwards). Every node
started with the same two values shares the room through Redis.

Run alone: ``BENCH_REDIS_URL=redis://127.0.0.1:6379/14 BENCH_REDIS_PREFIX=bench: \\
uvicorn cluster_server:app --app-dir benchmarks --ws websockets-sansio --port 8001``.
"""

import os

from fastapi import FastAPI

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.brokers.redis import RedisBroker

broker = RedisBroker(os.environ["BENCH_REDIS_URL"], prefix=os.environ["BENCH_REDIS_PREFIX"])
dialogue = Dialogue(rooms={"bench": RoomConfig(name="bench")}, allow_anonymous=True, broker=broker)
app = FastAPI()
app.include_router(dialogue.router)
