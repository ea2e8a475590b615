"""The chat demo: rooms, typed messages with history, typing, presence, direct messages.

Run from the repository root:  python examples/chat/app.py
then open the printed URL in two browser windows. Messages and rooms created
in the page are kept in ``chat.db`` (SQLite, in the directory you run it
from), so they survive a restart; ``DIALOGUE_DATABASE_URL`` points it
elsewhere (e.g. ``postgresql+asyncpg://...``). It needs the ``sqlite`` extra:
``pip install -e ".[sqlite]"``.

Direct messages are a room family, ``dm:{a}:{b}`` (the two user ids, sorted).
Each user also has an inbox, ``user:{user_id}``, that the page joins at
sign-in: when a direct message is published, the server puts a small ``dm``
notice into both members' inboxes. Inboxes are rooms like any other, so the
notices are stored, replayed after a reconnect and sent as history on join:
a user learns of a conversation even when it was never opened, and the
sidebar and unread badges come back after a reload.

Web Push (off by default; it needs the ``push`` extra, ``pip install -e ".[sqlite,push]"``):
``CHAT_PUSH=1`` turns it on with a VAPID key generated into ``chat-vapid.pem`` on the
first run (next to ``chat.db``), or ``CHAT_VAPID_PRIVATE_KEY`` gives the key (PEM,
base64url or a file path); ``CHAT_VAPID_SUBJECT`` is the contact push services see
(``mailto:you@example.com``). The page then offers "Notify me": the service worker
``/sw.js`` shows a notification for a direct message while its conversation is not
open in any tab.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from dialogue_fastapi import (
    Dialogue,
    EventMessage,
    Identity,
    PublishContext,
    PushConfig,
    PushTemplate,
    RateLimit,
    Reject,
    RoomConfig,
    define_event,
)
from dialogue_fastapi.middleware import content_filter

STATIC = Path(__file__).parent / "static"
USER_ID = re.compile(r"[A-Za-z0-9_.@-]+")  # a user id must fit in a room id: dm:{a}:{b}


class Message(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class Typing(BaseModel):
    typing: bool


class DmNotice(BaseModel):
    room: str  # the conversation, dm:{a}:{b}
    sender: str
    seq: int  # the message's seq in that room


class Read(BaseModel):
    room: str
    seq: int  # read up to this seq


# in rooms with "webpush" in channels (direct messages), a message offline users are
# notified of; the url opens the conversation (the service worker, static/sw.js)
message = define_event("message", Message, history=100, description="a chat line",
                       push=PushTemplate(title="{sender}", body="{text}", url="/?room={room}"))
typing = define_event("typing", Typing, description="someone is typing",
                      push=lambda msg: None)  # never a notification
dm_notice = define_event("dm", DmNotice, history=200, description="a direct message arrived")
read = define_event("read", Read, history=200, description="a conversation was read up to seq")


def authenticate(conn: HTTPConnection) -> Identity:
    """Demo auth: the name typed in the page, sent as ?token= on the WebSocket and as
    ``Authorization: Bearer`` on REST calls (push registration). Not for production."""
    bearer = conn.headers.get("authorization", "")
    bearer = bearer[7:] if bearer[:7].lower() == "bearer " else ""
    name = (conn.query_params.get("token") or bearer or conn.headers.get("x-user") or "").strip()
    if not name or len(name) > 32:
        raise Reject("enter a name of 1 to 32 characters")
    if not USER_ID.fullmatch(name):
        raise Reject("use letters, digits and _ . @ - only (no spaces)")
    return Identity(user_id=name)


async def notices_from_the_server(ctx: PublishContext, call_next: Any) -> EventMessage | None:
    """Only the server writes ``dm`` notices; the owner of an inbox writes read markers."""
    if ctx.message.event == "dm" and ctx.identity is not None:
        raise Reject("dm notices are sent by the server", code="FORBIDDEN")
    result: EventMessage | None = await call_next(ctx)
    return result


def push_config() -> PushConfig | None:
    """Web Push when CHAT_PUSH=1 or CHAT_VAPID_PRIVATE_KEY is set, else None (the default)."""
    key = os.environ.get("CHAT_VAPID_PRIVATE_KEY")
    if not key and os.environ.get("CHAT_PUSH") != "1":
        return None
    if not key:
        from dialogue_fastapi.push.vapid import generate_vapid_key  # the push extra

        stored = Path("chat-vapid.pem")
        if not stored.exists():  # once: subscriptions are bound to this key
            stored.write_text(generate_vapid_key())
            stored.chmod(0o600)
        key = str(stored.resolve())
    local = os.environ.get("CHAT_PUSH_LOCAL_ENDPOINTS") == "1"  # tests: a push service on 127.0.0.1
    return PushConfig(vapid_private_key=key,
                      vapid_subject=os.environ.get("CHAT_VAPID_SUBJECT", "mailto:chat@example.com"),
                      allow_http_endpoints=local, allow_private_endpoints=local)


PUSH = push_config()
# direct messages also go out as push notifications when push is on
DM_CHANNELS: list[Any] = ["websocket", "sse", "webpush"] if PUSH else ["websocket", "sse"]

dialogue = Dialogue(
    rooms={
        "lobby": RoomConfig(name="Lobby", events=[message, typing],
                            sync_history_on_join=50, presence_events=True),
        "random": RoomConfig(name="Random", events=[message, typing],
                             sync_history_on_join=50, presence_events=True),
        # one room per pair of users, made on first use; only the two may join or read it
        "dm:{a}:{b}": RoomConfig(name="Direct messages", events=[message, typing],
                                 members=["a", "b"], sync_history_on_join=50,
                                 presence_events=True, channels=DM_CHANNELS),
        # each user's inbox: dm notices from the server and the user's read markers
        "user:{user_id}": RoomConfig(name="Inbox", events=[dm_notice, read],
                                     members=["user_id"], sync_history_on_join=200,
                                     middleware=[notices_from_the_server]),
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
    # CHAT_METRICS=1 (docker-compose.yml): /dialogue/metrics for the Prometheus container; the
    # app ports are not published and nginx refuses that path, so it is not public
    metrics={"allow_unprotected": True} if os.environ.get("CHAT_METRICS") == "1" else False,
    push=PUSH,
)


async def notify_members(msg: EventMessage) -> None:
    """A message in ``dm:a:b``: a notice in ``user:a`` and ``user:b`` (all their tabs)."""
    room = dialogue.room(msg.room)
    notice = {"room": msg.room, "sender": msg.from_, "seq": msg.seq}
    for member in dict.fromkeys(room.params.values()):  # once for notes to self (dm:a:a)
        await dialogue.trigger(f"user:{member}", dm_notice, notice)


# runs once per message in any conversation, on the node that published it
dialogue.on("dm:{a}:{b}", message, notify_members)

app = FastAPI(title="dialogue-fastapi chat demo")
app.include_router(dialogue.router, prefix="/dialogue")


@app.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@app.get("/sw.js", include_in_schema=False)
async def service_worker() -> FileResponse:
    """The service worker, at the root so that its scope is the whole page."""
    return FileResponse(STATIC / "sw.js", media_type="text/javascript",
                        headers={"Cache-Control": "no-cache"})


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
