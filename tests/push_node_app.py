"""The app ``test_push_dispatch.py`` runs as a subprocess (``uvicorn push_node_app:app``) and kills:
one push room, SQLite persistence at ``PUSH_NODE_DB``, a grace period of ``PUSH_NODE_GRACE``."""

from __future__ import annotations

import os

from fastapi import FastAPI
from helpers import authenticate

from dialogue_fastapi import Dialogue, PushConfig, RoomConfig

dialogue = Dialogue(
    rooms={"design": RoomConfig(name="Design", channels=["websocket", "webpush"])},
    authenticate=authenticate,
    persistence=os.environ["PUSH_NODE_DB"],
    push=PushConfig(vapid_private_key=os.environ["PUSH_NODE_VAPID"],
                    vapid_subject="mailto:ops@example.com", allow_http_endpoints=True,
                    allow_private_endpoints=True,
                    grace_period=float(os.environ.get("PUSH_NODE_GRACE", "3"))),
)
app = FastAPI()
app.include_router(dialogue.router)
