"""dialogue-fastapi for ``pipeline.py`` and ``flood.py``: ``dialogue_server.py`` plus a pipeline.

``BENCH_PIPELINE`` picks the configuration (default ``none``):

- ``none``: no middleware, no rate limit (``dialogue_server.py``);
- ``middleware``: three built-in middleware: ``log_events(level=DEBUG)`` with
  its logger at WARNING (nothing is printed), ``content_filter([...])`` and
  ``transform(lambda m: m)``;
- ``memory``: ``middleware`` plus ``RateLimit(default=BENCH_RATE)`` in ``memory://``
  (the default strategy, ``sliding-window``);
- ``redis``: ``middleware`` plus the same limit in ``BENCH_REDIS_URL`` under
  ``BENCH_REDIS_PREFIX`` (the benchmark deletes the keys afterwards);
- ``moving``: ``memory`` with ``strategy="moving-window"``;
- ``limit``: a rate limit alone, in ``memory://`` (``flood.py``).

``BENCH_RATE`` defaults to ``1000000/minute`` (never reached).

``BENCH_BROKER=redis`` (``pipeline.py``'s default): every configuration publishes
through ``RedisBroker(BENCH_REDIS_URL)`` under ``BENCH_REDIS_PREFIX`` + ``broker:``,
so the ``redis`` configuration's limit is in the broker's own Redis (checked in the
publish script); ``memory`` (this module's default): the memory broker.

Run alone: ``BENCH_PIPELINE=memory uvicorn pipeline_server:app --app-dir benchmarks --ws websockets-sansio``.
"""

import logging
import os
from typing import Any

from fastapi import FastAPI

from dialogue_fastapi import Dialogue, RateLimit, RoomConfig
from dialogue_fastapi.middleware import content_filter, log_events, transform

KIND = os.environ.get("BENCH_PIPELINE", "none")
BROKER = os.environ.get("BENCH_BROKER", "memory")
RATE = os.environ.get("BENCH_RATE", "1000000/minute")
KINDS = ("none", "middleware", "memory", "redis", "moving", "limit")
if KIND not in KINDS:
    raise SystemExit(f"BENCH_PIPELINE={KIND!r}: expected one of {', '.join(KINDS)}")

settings: dict[str, Any] = {}
if KIND in ("middleware", "memory", "redis", "moving"):
    events_log = logging.getLogger("bench.pipeline.events")
    events_log.setLevel(logging.WARNING)
    settings["middleware"] = [
        log_events(events_log, level=logging.DEBUG),
        content_filter(["spam", "scam", "phishing"]),
        transform(lambda m: m),
    ]
if KIND in ("memory", "limit"):
    settings["rate_limit"] = RateLimit(default=RATE)
elif KIND == "moving":
    settings["rate_limit"] = RateLimit(default=RATE, strategy="moving-window")
elif KIND == "redis":
    settings["rate_limit"] = RateLimit(
        default=RATE, storage=os.environ["BENCH_REDIS_URL"], prefix=os.environ["BENCH_REDIS_PREFIX"]
    )

if BROKER == "redis":
    from dialogue_fastapi.brokers.redis import RedisBroker

    settings["broker"] = RedisBroker(os.environ["BENCH_REDIS_URL"],
                                     prefix=os.environ["BENCH_REDIS_PREFIX"] + "broker:")
elif BROKER != "memory":
    raise SystemExit(f"BENCH_BROKER={BROKER!r}: expected redis or memory")

dialogue = Dialogue(rooms={"bench": RoomConfig(name="bench")}, allow_anonymous=True, **settings)
app = FastAPI()
app.include_router(dialogue.router)
