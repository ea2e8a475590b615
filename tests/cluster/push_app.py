"""The app of the two-node push tests (``uvicorn push_app:app``, test_cluster_push.py).

Every node shares the Redis broker (``DIALOGUE_TEST_REDIS_URL``, key prefix
``CLUSTER_PREFIX``) and the PostgreSQL store (``PUSH_DATABASE_URL``, tables named
from ``PUSH_TABLE_PREFIX``): registrations made over REST on one node are seen by
the other, and both run a push dispatcher on the same outbox. Web Push goes to the
test's fake service (http on 127.0.0.1 allowed) with the VAPID key ``PUSH_VAPID``,
a grace period of ``PUSH_GRACE`` seconds, a claim lease of ``PUSH_LEASE`` seconds and a
device rate high enough for every test event.

Rooms: ``design`` and ``room0`` ... ``room19``, all with ``webpush`` in their channels.
Users are told apart by ``?token=<user>`` or ``Authorization: Bearer <user>``. When the
test process (``CLUSTER_PARENT_PID``) is gone, the node ends its own process group.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from parent_watch import watch_parent
from token_auth import authenticate

from dialogue_fastapi import Dialogue, PushConfig, RoomConfig
from dialogue_fastapi.brokers.redis import RedisBroker
from dialogue_fastapi.stores.sql import SqlStore

ROUTER_PREFIX = "/dialogue"
ROOMS = ["design", *(f"room{i}" for i in range(20))]


broker = RedisBroker(os.environ["DIALOGUE_TEST_REDIS_URL"], prefix=os.environ["CLUSTER_PREFIX"])
store = SqlStore(os.environ["PUSH_DATABASE_URL"], table_prefix=os.environ["PUSH_TABLE_PREFIX"])
dialogue = Dialogue(
    rooms={room: RoomConfig(name=room.capitalize(), channels=["websocket", "webpush"])
           for room in ROOMS},
    broker=broker, persistence=store, authenticate=authenticate,
    push=PushConfig(vapid_private_key=os.environ["PUSH_VAPID"],
                    vapid_subject="mailto:ops@example.com", allow_http_endpoints=True,
                    allow_private_endpoints=True, grace_period=float(os.environ["PUSH_GRACE"]),
                    claim_lease=float(os.environ.get("PUSH_LEASE", "120")),
                    device_rate="1000/minute"),  # a device gets every test event uncollapsed
)
app = FastAPI()
app.include_router(dialogue.router, prefix=ROUTER_PREFIX)


@app.get("/test/push")
async def push_stats() -> dict[str, Any]:
    """This node's dispatcher counters."""
    dispatch = dialogue.runtime.push_dispatch
    return {} if dispatch is None else {**dispatch.stats(), "owner": dispatch.owner}


watch_parent("push-parent-watch")
