"""The chat demo: rooms, typed messages with history, typing, presence.

Run from the repository root:  python examples/chat/app.py
then open the printed URL in two browser windows. Messages and rooms created
in the page are kept in ``chat.db`` (SQLite, in the directory you run it
from), so they survive a restart; ``DIALOGUE_DATABASE_URL`` points it
elsewhere (e.g. ``postgresql+asyncpg://...``). It needs the ``sqlite`` extra:
``pip install -e ".[sqlite]"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RateLimit, Reject, RoomConfig, define_event
from dialogue_fastapi.middleware import content_filter

STATIC = Path(__file__).parent / "static"


class Message(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class Typing(BaseModel):
    typing: bool


message = define_event("message", Message, history=100, description="a chat line")
typing = define_event("typing", Typing, description="someone is typing")


def authenticate(conn: HTTPConnection) -> Identity:
    """Demo auth: the name typed in the page, sent as ?token=. Not for production."""
    name = (conn.query_params.get("token") or conn.headers.get("x-user") or "").strip()
    if not name or len(name) > 32:
        raise Reject("enter a name of 1 to 32 characters")
    return Identity(user_id=name)


dialogue = Dialogue(
    rooms={
        "lobby": RoomConfig(name="Lobby", events=[message, typing],
                            sync_history_on_join=50, presence_events=True),
        "random": RoomConfig(name="Random", events=[message, typing],
                             sync_history_on_join=50, presence_events=True),
    },
    events=[message, typing],
    authenticate=authenticate,
    persistence="sqlite+aiosqlite:///chat.db",  # history survives restarts
    # per user: at most 10 messages in 10 seconds and 2 typing notices a second
    # (over it, the page shows RATE_LIMITED); per client IP: connection attempts
    # and failed sign-ins
    rate_limit=RateLimit(events={"message": "10 per 10 seconds", "typing": "2/second"},
                         connections="60/minute", auth_failures="30/minute",
                         strategy="moving-window"),  # exact, and cheap for limits this small
    middleware=[content_filter(["spam"], mode="replace")],  # "spam" arrives as "***"
)

app = FastAPI(title="dialogue-fastapi chat demo")
app.include_router(dialogue.router, prefix="/dialogue")


@app.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


def main() -> None:
    import uvicorn

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"\n  dialogue-fastapi chat demo: open http://{host}:{port}/ in two browser windows\n",
          flush=True)
    uvicorn.run(app, host=host, port=port, ws="websockets-sansio",
                ws_per_message_deflate=False, log_level="info")


if __name__ == "__main__":
    main()
