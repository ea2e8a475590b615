"""The app ``test_token_logs.py`` runs under the uvicorn command line with its access log on:
users by ``?token=`` (the protocol allows it), one room, one REST route of the app's own."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RoomConfig


def authenticate(conn: HTTPConnection) -> Identity | None:
    token = conn.query_params.get("token")
    return Identity("user-" + token[:4]) if token else None


dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate)
app = FastAPI()
app.include_router(dialogue.router, prefix="/dialogue")


@app.get("/search")
async def search(q: str = "") -> dict[str, str]:
    return {"q": q}
