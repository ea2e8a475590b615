"""The app ``test_metrics_workers.py`` runs with several workers (uvicorn ``--workers 2``,
gunicorn ``-w 2``) in prometheus-client's multiprocess mode: every client is named after the
worker that accepted it (``w<pid>``), so a test knows which worker holds which connection, and
``GET /hold`` keeps the worker that takes it busy, so that the other one accepts meanwhile."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, MetricsConfig, RoomConfig


def authenticate(conn: HTTPConnection) -> Identity:
    return Identity(user_id=f"w{os.getpid()}")


dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate,
                    metrics=MetricsConfig(sample_interval=0.05))
app = FastAPI()
app.include_router(dialogue.router)


@app.get("/hold")
async def hold(seconds: float = 1.0) -> StreamingResponse:
    """Sends this worker's pid, then blocks its event loop for ``seconds``: connections opened
    meanwhile are accepted by another worker (the kernel would otherwise pick one)."""

    async def body() -> AsyncIterator[bytes]:
        yield f"{os.getpid()}\n".encode()
        time.sleep(seconds)  # on purpose: this worker's loop accepts nothing meanwhile
        yield b"done\n"

    return StreamingResponse(body())
