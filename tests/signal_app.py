"""The app ``test_exit_signal.py`` runs under the uvicorn command line (``uvicorn signal_app:app``):
one room, anonymous clients, each disconnect hook written to ``SIGNAL_APP_LOG``, and a slow route."""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI

from dialogue_fastapi import Dialogue, Hooks, Identity, RoomConfig


def remember(identity: Identity, client_id: str) -> None:
    with open(os.environ["SIGNAL_APP_LOG"], "a") as log:
        log.write(f"disconnected {client_id}\n")


dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, allow_anonymous=True,
                    hooks=Hooks(on_disconnected=remember))
app = FastAPI()
app.include_router(dialogue.router)


@app.get("/slow")
async def slow() -> dict[str, bool]:
    """A request that outlasts any test: uvicorn's graceful shutdown would wait for it."""
    await asyncio.sleep(60)
    return {"done": True}
