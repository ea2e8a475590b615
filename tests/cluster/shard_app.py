"""The application of the Redis Cluster node tests (``uvicorn shard_app:app``).

Every node runs the ``redis+cluster://`` broker on the local Redis Cluster the
test started (``CLUSTER_BROKER_URL``, with the module's key prefix in it).
Rooms are the family ``r:{name}``, so a test picks room names whose hash slots
land on each shard; ``lobby:{name}`` rooms have ``max_size=3`` and presence
events. ``send_to_user`` is reachable under ``/test`` on each node.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from parent_watch import watch_parent
from pydantic import BaseModel
from token_auth import authenticate

from dialogue_fastapi import Dialogue, RoomConfig

BROKER_URL = os.environ["CLUSTER_BROKER_URL"]
ROUTER_PREFIX = "/dialogue"


dialogue = Dialogue(
    rooms={"r:{name}": RoomConfig(name="Room"),
           "lobby:{name}": RoomConfig(name="Lobby", max_size=3, presence_events=True)},
    broker=BROKER_URL, authenticate=authenticate,
)
app = FastAPI()
app.include_router(dialogue.router, prefix=ROUTER_PREFIX)
watch_parent("shard node")


class DirectBody(BaseModel):
    user: str
    event: str
    data: Any = None


@app.post("/test/send_to_user")
async def send_to_user(body: DirectBody) -> dict[str, Any]:
    await dialogue.send_to_user(body.user, body.event, body.data)
    return {"ok": True}


@app.get("/test/clients/{user}")
async def get_clients(user: str) -> dict[str, Any]:
    return {"clients": await dialogue.get_clients(user)}
