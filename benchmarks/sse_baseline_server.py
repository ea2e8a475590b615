"""The ceiling for ``sse.py``: a plain sse-starlette broadcast server.

``GET /sse?room=bench`` returns an ``EventSourceResponse`` over an async
generator fed by the stream's bounded ``asyncio.Queue`` (``QUEUE_LIMIT``
messages). A publish encodes the event once - the envelope with orjson, then
the whole SSE message (``id:``, ``event:``, ``data:`` lines ending in ``\\n``,
as dialogue-fastapi writes them) - and puts the same bytes in every
subscriber's queue. A stream whose queue overflows is dropped from the room
and its response ends (the client reconnects), like the WebSocket ceiling's
4009.

Batching: the generator yields everything queued when it wakes as one chunk
(one ``http.response.body`` message, one socket write), as a competent plain
implementation would; ``BENCH_SSE_BATCH=0`` yields one message per chunk.

Publishing, the same two ways as dialogue-fastapi:

- ``/ws``: a WebSocket speaking the subset of dialogue's protocol that
  ``sse.py``'s publisher uses (``hello``, ``join``, ``publish`` -> a reply with
  ``seq`` and ``ts``, ``unsubscribe``, ``ping``). WebSocket connections never
  receive events, only replies (dialogue's publisher unsubscribes from them);
- ``POST /publish`` with ``{"room", "event", "data", "meta"?}`` -> 202
  ``{"seq", "ts"}`` (dialogue: ``POST /rooms/{room}/events``).

The first message of a stream is ``retry:`` plus an ``event: dialogue`` hello
with ``positions``; the ``id:`` of every message is a cursor in dialogue's
format (``c1.`` + base64url of ``[[room, epoch, seq]]``), so messages have the
same size on both servers. A comment is sent every ``HEARTBEAT`` seconds.

Run alone: ``uvicorn sse_baseline_server:app --app-dir benchmarks --ws websockets-sansio``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

QUEUE_LIMIT = 1024
HEARTBEAT = 25
RETRY_MS = 2000
BATCH = os.environ.get("BENCH_SSE_BATCH", "1") != "0"
EPOCH = secrets.token_urlsafe(8)

_client_ids = itertools.count(1)
streams: dict[str, set[Stream]] = {}
seqs: dict[str, int] = {}


def cursor(room: str, seq: int) -> bytes:
    raw = orjson.dumps([[room, EPOCH, seq]])
    return b"c1." + base64.urlsafe_b64encode(raw).rstrip(b"=")


def message(event_id: bytes, event: str, data: bytes) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)


class Stream:
    """One SSE response's queue of encoded messages."""

    __slots__ = ("overflowed", "queue", "room")

    def __init__(self, room: str) -> None:
        self.room = room
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def push(self, chunk: bytes) -> None:
        try:
            self.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self.overflowed = True
            self.leave()

    def leave(self) -> None:
        streams.get(self.room, set()).discard(self)


def publish(room: str, event: str, data: Any, meta: Any, sender: str) -> dict[str, int]:
    """Encode the event once and queue the same bytes for every stream of the room."""
    seq = seqs[room] = seqs.get(room, 0) + 1
    ts = time.time_ns() // 1_000_000
    envelope = {
        "op": "event",
        "room": room,
        "event": event,
        "data": data,
        "from": sender,
        "ts": ts,
        "seq": seq,
        "meta": meta if isinstance(meta, dict) else {},
    }
    chunk = message(cursor(room, seq), event, orjson.dumps(envelope))
    for stream in tuple(streams.get(room, ())):
        stream.push(chunk)
    return {"seq": seq, "ts": ts}


async def events(stream: Stream, hello: bytes) -> AsyncIterator[bytes]:
    queue = stream.queue
    try:
        yield hello
        while not stream.overflowed:
            chunk = await queue.get()
            if not BATCH or queue.empty():
                yield chunk
                continue
            parts = [chunk]
            while not queue.empty():
                parts.append(queue.get_nowait())
            yield b"".join(parts)
    finally:
        stream.leave()


async def sse(request: Request) -> Response:
    rooms = request.query_params.getlist("room")
    if len(rooms) != 1:
        return Response(b'{"error":"exactly one room"}', 400, media_type="application/json")
    room = rooms[0]
    stream = Stream(room)
    streams.setdefault(room, set()).add(stream)
    seq = seqs.get(room, 0)
    hello = {
        "op": "hello",
        "client_id": f"c_{next(_client_ids):x}",
        "user_id": "anon_" + secrets.token_hex(4),
        "protocol": 1,
        "heartbeat": HEARTBEAT,
        "positions": {room: {"seq": seq, "epoch": EPOCH}},
    }
    first = b"retry: %d\n" % RETRY_MS + message(cursor(room, seq), "dialogue", orjson.dumps(hello))
    return EventSourceResponse(events(stream, first), ping=HEARTBEAT)


async def rest_publish(request: Request) -> Response:
    body = orjson.loads(await request.body())
    if not isinstance(body, dict) or not isinstance(body.get("room"), str) or "event" not in body:
        return Response(b'{"error":"BAD_REQUEST"}', 400, media_type="application/json")
    result = publish(body["room"], str(body["event"]), body.get("data"), body.get("meta"), "anon")
    return Response(orjson.dumps(result), 202, media_type="application/json")


async def ws_endpoint(ws: WebSocket) -> None:
    """Publishing over WebSocket: replies only, no events."""
    await ws.accept()
    user = "anon_" + secrets.token_hex(4)
    joined: set[str] = set()

    async def reply(cmd_id: Any, result: dict[str, Any]) -> None:
        await ws.send_text(orjson.dumps({"id": cmd_id, "ok": True, "result": result}).decode())

    hello = {"op": "hello", "client_id": f"c_{next(_client_ids):x}", "user_id": user, "protocol": 1,
             "heartbeat": HEARTBEAT}  # fmt: skip
    await ws.send_text(orjson.dumps(hello).decode())
    try:
        while True:
            cmd = orjson.loads(await ws.receive_text())
            if not isinstance(cmd, dict):
                continue
            op, cmd_id, room = cmd.get("op"), cmd.get("id"), cmd.get("room")
            if op == "publish" and room in joined:
                result = publish(room, str(cmd.get("event")), cmd.get("data"), cmd.get("meta"), user)
                await reply(cmd_id, result)
            elif op == "join" and isinstance(room, str):
                joined.add(room)
                await reply(cmd_id, {})
            elif op == "unsubscribe":
                await reply(cmd_id, {"subscriptions": []})
            elif op == "ping" and cmd_id is not None:
                await reply(cmd_id, {})
            elif cmd_id is not None:
                error = {"code": "BAD_REQUEST", "message": f"unsupported {op!r} (or not in the room)"}
                await ws.send_text(orjson.dumps({"id": cmd_id, "ok": False, "error": error}).decode())
    except (WebSocketDisconnect, orjson.JSONDecodeError):
        pass


app = Starlette(
    routes=[
        Route("/sse", sse),
        Route("/publish", rest_publish, methods=["POST"]),
        WebSocketRoute("/ws", ws_endpoint),
    ]
)
