"""The application every cluster node process runs (``uvicorn cluster_app:app``).

Configured from the environment the test sets:

- ``DIALOGUE_TEST_REDIS_URL``: the Redis every node shares;
- ``CLUSTER_PREFIX``: the broker's key prefix (one per test module), which also
  prefixes the keys this app writes for the tests (``{prefix}test:...``);
- ``CLUSTER_DATABASE_URL`` (optional): durable history in this database, with the
  tables named from ``CLUSTER_TABLE_PREFIX`` (optional);
- ``CLUSTER_RATE_LIMIT`` (optional): a publish limit per user, kept in Redis;
- ``CLUSTER_PARENT_PID``: the test process; when it is gone the node ends its
  own process group, so no node outlives a test run that was killed.

Users are told apart by ``?token=<user>`` or ``Authorization: Bearer <user>``.
Besides the Dialogue router (under ``/dialogue``) it has a few routes for the
tests under ``/test`` that call the server-side API of *this* node.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from parent_watch import watch_parent
from pydantic import BaseModel
from redis.asyncio import Redis
from token_auth import authenticate

from dialogue_fastapi import Dialogue, EventMessage, Hooks, Identity, RateLimit, RoomConfig
from dialogue_fastapi.brokers.redis import RedisBroker

REDIS_URL = os.environ["DIALOGUE_TEST_REDIS_URL"]
PREFIX = os.environ["CLUSTER_PREFIX"]
ROUTER_PREFIX = "/dialogue"

# keys this app writes for the tests (under the broker's prefix, so they are cleaned up with it)
CONNECTIONS_KEY = f"{PREFIX}test:connections"  # hash client_id -> "pid node_id"


HOOKS_KEY = f"{PREFIX}test:hooks"  # list of [hook, user, room or client id, pid] as JSON


def handled_key(room: str) -> str:
    """Hash seq -> how many times an ``on`` handler ran for that event."""
    return f"{PREFIX}test:handled:{room}"


def handled_total_key(room: str) -> str:
    """Counter: every ``on`` handler run in the room, cluster-wide."""
    return f"{PREFIX}test:handled-total:{room}"


# rooms: every test uses its own room ids so that tests sharing the nodes of a module
# never see each other's events
OPEN_ROOMS = ["cross", "order", "stream", "handled", "killed", "uvicorn-workers", "gunicorn-workers"]
CAPPED_ROOMS = ["capped"]  # max_size=5
PRESENCE_ROOMS = ["lobby"]  # presence_events=True
HANDLED_ROOMS = ["handled"]  # an on-handler counts its runs in Redis

rooms: dict[str, RoomConfig] = {room: RoomConfig(name=room) for room in OPEN_ROOMS}
rooms.update({room: RoomConfig(name=room, max_size=5) for room in CAPPED_ROOMS})
rooms.update({room: RoomConfig(name=room, presence_events=True) for room in PRESENCE_ROOMS})
# room families: a conversation per pair of users; teams of at most 3 (test_cluster_families)
rooms["dm:{a}:{b}"] = RoomConfig(name="Direct messages", members=["a", "b"])
rooms["team:{n:int}"] = RoomConfig(name="Team", max_size=3)


state: dict[str, Any] = {}  # the app's own Redis client, made in the lifespan (loop-bound)


def _redis() -> Redis:
    client: Redis = state["redis"]
    return client


async def remember_connection(identity: Identity, client_id: str) -> None:
    """Which process holds each connection (``--workers`` tests ask Redis)."""
    await _redis().hset(CONNECTIONS_KEY, client_id, f"{os.getpid()} {broker.node_id}")


async def record_hook(name: str, identity: Identity, arg: str) -> None:
    """``on_left`` / ``on_disconnected`` runs, with the process that ran them."""
    await _redis().rpush(HOOKS_KEY, json.dumps([name, identity.user_id, arg, os.getpid()]))


async def record_left(identity: Identity, room_id: str) -> None:
    await record_hook("on_left", identity, room_id)


async def record_disconnected(identity: Identity, client_id: str) -> None:
    await record_hook("on_disconnected", identity, client_id)


def store() -> Any:
    """The event store when the test asks for one (``CLUSTER_DATABASE_URL``), else None."""
    url = os.environ.get("CLUSTER_DATABASE_URL")
    if not url:
        return None
    from dialogue_fastapi.stores.sql import SqlStore

    table_prefix = os.environ.get("CLUSTER_TABLE_PREFIX")
    return SqlStore(url) if not table_prefix else SqlStore(url, table_prefix=table_prefix)


def rate_limit() -> RateLimit | None:
    """``CLUSTER_RATE_LIMIT`` (e.g. ``3/minute``): every user's publishes, budgets in Redis."""
    limit = os.environ.get("CLUSTER_RATE_LIMIT")
    if not limit:
        return None
    return RateLimit(default=limit, storage=REDIS_URL.split("?", 1)[0], prefix=f"{PREFIX}rl")


broker = RedisBroker(REDIS_URL, prefix=PREFIX)
dialogue = Dialogue(rooms=rooms, broker=broker, persistence=store(), authenticate=authenticate,
                    hooks=Hooks(on_connected=remember_connection, on_left=record_left,
                                on_disconnected=record_disconnected),
                    rate_limit=rate_limit())


async def count_run(message: EventMessage) -> None:
    async with _redis().pipeline(transaction=True) as pipe:
        pipe.hincrby(handled_key(message.room), str(message.seq), 1)
        pipe.incr(handled_total_key(message.room))
        await pipe.execute()


for handled_room in HANDLED_ROOMS:
    dialogue.on(handled_room, "*", count_run)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    client = Redis.from_url(REDIS_URL.split("?", 1)[0])  # without the broker's own options
    state["redis"] = client
    try:
        yield
    finally:
        await client.aclose()


app = FastAPI(lifespan=lifespan)
app.include_router(dialogue.router, prefix=ROUTER_PREFIX)


class DirectBody(BaseModel):
    user: str
    event: str
    data: Any = None


class DisconnectBody(BaseModel):
    user: str
    reason: str = "disconnected by the test"


@app.get("/test/node")
async def node() -> dict[str, Any]:
    """Which process answered."""
    return {"pid": os.getpid(), "node_id": broker.node_id}


@app.post("/test/send_to_user")
async def send_to_user(body: DirectBody) -> dict[str, Any]:
    await dialogue.send_to_user(body.user, body.event, body.data)
    return {"node_id": broker.node_id}


@app.post("/test/disconnect_user")
async def disconnect_user(body: DisconnectBody) -> dict[str, Any]:
    await dialogue.disconnect_user(body.user, body.reason)
    return {"node_id": broker.node_id}


@app.get("/test/hooks")
async def hooks_run() -> dict[str, Any]:
    """Every recorded ``on_left`` / ``on_disconnected`` run, cluster-wide."""
    return {"runs": [json.loads(item) for item in await _redis().lrange(HOOKS_KEY, 0, -1)]}


@app.get("/test/clients/{user}")
async def get_clients(user: str) -> dict[str, Any]:
    return {"clients": await dialogue.get_clients(user), "node_id": broker.node_id}


@app.get("/test/in_room/{room}/{user}")
async def is_in_room(room: str, user: str) -> dict[str, Any]:
    return {"in_room": await dialogue.is_in_room(user, room), "node_id": broker.node_id}


watch_parent("cluster-parent-watch")
