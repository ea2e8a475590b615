"""python-socketio on ``shape.py``'s workload: ``AsyncServer`` (ASGI) under uvicorn.

Stock settings (the standard ``json`` module, engine.io pings every 25 s). Socket.IO's own
vocabulary for the same subset ``shape.py`` speaks to the other servers:

- connect with ``auth={"user": "<id>"}`` (none: the connection is refused);
- ``emit("join", {"room"})`` with an ack: ``enter_room``; ``user:<id>`` only for user ``<id>``;
- ``emit("publish", {"room", "event", "data"})`` with an ack: the sender must be in the room;
  the server emits ``"event"`` with dialogue's envelope (room, event, data, from, ts, seq)
  to the room (python-socketio encodes it once per emit) and acks ``{"ok", "seq", "ts"}``.

``POST /_bench/trigger`` (``sio.emit`` per event) and ``/_bench/gc`` are ``shape_server.py``'s,
served by a Starlette app behind ``socketio.ASGIApp``.

Run alone: ``uvicorn shape_socketio_server:app --app-dir benchmarks --ws websockets-sansio``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import socketio
from _shape_bench import trigger_events, watch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sio = socketio.AsyncServer(async_mode="asgi")
users: dict[str, str] = {}
seqs: dict[str, int] = {}


def envelope(room: str, event: Any, data: Any, sender: str) -> tuple[dict[str, Any], int, int]:
    seq = seqs[room] = seqs.get(room, 0) + 1
    ts = time.time_ns() // 1_000_000
    body = {"room": room, "event": event, "data": data, "from": sender, "ts": ts, "seq": seq, "meta": {}}
    return body, seq, ts


async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
    user = auth.get("user") if isinstance(auth, dict) else None
    if not user:
        return False
    users[sid] = str(user)
    return True


async def disconnect(sid: str, *_: Any) -> None:
    users.pop(sid, None)


async def join(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    room = str(data.get("room"))
    kind, _, rest = room.partition(":")
    if not ((kind == "user" and rest == users.get(sid)) or (kind == "group" and rest.isdigit())):
        return {"ok": False, "error": {"code": "FORBIDDEN"}}
    await sio.enter_room(sid, room)
    return {"ok": True, "position": {"seq": seqs.get(room, 0)}}


async def publish(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    room = str(data.get("room"))
    if room not in sio.rooms(sid):
        return {"ok": False, "error": {"code": "NOT_IN_ROOM"}}
    body, seq, ts = envelope(room, data.get("event"), data.get("data"), users.get(sid, "?"))
    await sio.emit("event", body, room=room)
    return {"ok": True, "seq": seq, "ts": ts}


for _name, _handler in (("connect", connect), ("disconnect", disconnect), ("join", join),
                       ("publish", publish)):
    sio.on(_name, _handler)  # the call form: the decorators are untyped


async def trigger(request: Request) -> Response:
    ok = 0
    for room, data in trigger_events(orjson.loads(await request.body())):
        body, _, _ = envelope(room, "message", data, "server")
        await sio.emit("event", body, room=room)
        ok += 1
        await asyncio.sleep(0)
    return Response(orjson.dumps({"ok": ok, "errors": 0}), media_type="application/json")


async def gc_stats(_: Request) -> Response:
    return Response(orjson.dumps(watch.snapshot("default")), media_type="application/json")


async def gc_reset(_: Request) -> Response:
    watch.reset()
    return Response(b"{}", media_type="application/json")


bench = Starlette(routes=[
    Route("/_bench/trigger", trigger, methods=["POST"]),
    Route("/_bench/gc", gc_stats),
    Route("/_bench/gc/reset", gc_reset, methods=["POST"]),
])
app = socketio.ASGIApp(sio, other_asgi_app=bench)
