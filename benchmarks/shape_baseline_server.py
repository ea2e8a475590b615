"""The ceiling for ``shape.py``: ``baseline_server.py``'s plain Starlette design, many rooms.

Rooms are plain strings in a dict (a set of connections each, dropped when the last member
leaves); ``user:<id>`` may be joined only by user ``<id>``. The protocol subset ``shape.py``
uses: ``hello`` on accept (``/ws?user=<id>`` is the identity; none: close 4001), ``join``,
``publish`` -> an ``event`` to every member plus a reply, ``ping``. As in ``baseline_server.py``
each connection has one bounded queue and one writer task, each event is encoded once with
orjson, and an overflowing connection is closed with 4009. ``POST /_bench/trigger`` and
``/_bench/gc`` are ``shape_server.py``'s.

Run alone: ``uvicorn shape_baseline_server:app --app-dir benchmarks --ws websockets-sansio``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
from _shape_bench import objects_report, trigger_events, watch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

QUEUE_LIMIT = 1024
SLOW_CONSUMER = 4009
UNAUTHORIZED = 4001

_client_ids = itertools.count(1)
rooms: dict[str, set[Connection]] = {}
seqs: dict[str, int] = {}


class Connection:
    """One socket: a bounded queue of encoded frames drained by a writer task."""

    __slots__ = ("overflowed", "queue", "rooms", "user", "ws")

    def __init__(self, ws: WebSocket, user: str) -> None:
        self.ws, self.user = ws, user
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.rooms: set[str] = set()
        self.overflowed = False

    def push(self, text: str) -> None:
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.overflowed = True
            self.leave_all()
        self.queue.put_nowait(text)

    def leave_all(self) -> None:
        for room in self.rooms:
            members = rooms.get(room)
            if members is not None:
                members.discard(self)
                if not members:
                    del rooms[room]
        self.rooms.clear()

    async def write_loop(self) -> None:
        get, send = self.queue.get, self.ws.send_text
        try:
            while True:
                text = await get()
                if self.overflowed:
                    await self.ws.close(SLOW_CONSUMER, "slow consumer")
                    return
                await send(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client went away; the receive loop sees it too

    def reply(self, cmd_id: Any, result: dict[str, Any]) -> None:
        self.push(orjson.dumps({"id": cmd_id, "ok": True, "result": result}).decode())

    def error(self, cmd_id: Any, code: str, message: str) -> None:
        body = {"id": cmd_id, "ok": False, "error": {"code": code, "message": message}}
        self.push(orjson.dumps(body).decode())


def fan_out(room: str, event: Any, data: Any, sender: str) -> tuple[int, int]:
    """Encode the event once and queue it on every member; its seq and ts."""
    seq = seqs[room] = seqs.get(room, 0) + 1
    ts = time.time_ns() // 1_000_000
    envelope = {"op": "event", "room": room, "event": event, "data": data, "from": sender,
                "ts": ts, "seq": seq, "meta": {}}
    text = orjson.dumps(envelope).decode()
    for member in tuple(rooms.get(room, ())):
        member.push(text)
    return seq, ts


def may_join(conn: Connection, room: str) -> bool:
    kind, _, rest = room.partition(":")
    return (kind == "user" and rest == conn.user) or (kind == "group" and rest.isdigit())


def handle(conn: Connection, cmd: dict[str, Any]) -> None:
    op, cmd_id, room = cmd.get("op"), cmd.get("id"), cmd.get("room")
    if op == "publish" and isinstance(room, str):
        if room not in conn.rooms:
            conn.error(cmd_id, "NOT_IN_ROOM", f"not in room {room!r}")
            return
        seq, ts = fan_out(room, cmd.get("event"), cmd.get("data"), conn.user)
        conn.reply(cmd_id, {"seq": seq, "ts": ts})
    elif op == "join" and isinstance(room, str):
        if not may_join(conn, room):
            conn.error(cmd_id, "FORBIDDEN", f"room {room!r} is only for its members")
            return
        rooms.setdefault(room, set()).add(conn)
        conn.rooms.add(room)
        conn.reply(cmd_id, {"room": {"id": room}, "position": {"seq": seqs.get(room, 0)}})
    elif op == "ping":
        if cmd_id is not None:
            conn.reply(cmd_id, {})
    else:
        conn.error(cmd_id, "BAD_REQUEST", f"unsupported op {op!r}")


async def endpoint(ws: WebSocket) -> None:
    user = ws.query_params.get("user")
    await ws.accept()
    if not user:
        await ws.close(UNAUTHORIZED, "missing or invalid credentials")
        return
    conn = Connection(ws, user)
    writer = asyncio.create_task(conn.write_loop())
    hello = {"op": "hello", "client_id": f"c_{next(_client_ids):x}", "user_id": user, "protocol": 1,
             "heartbeat": 25}
    conn.push(orjson.dumps(hello).decode())
    try:
        while not conn.overflowed:
            cmd = orjson.loads(await ws.receive_text())
            if isinstance(cmd, dict):
                handle(conn, cmd)
    except (WebSocketDisconnect, orjson.JSONDecodeError):
        pass
    finally:
        conn.leave_all()
        if conn.overflowed:
            await writer  # it closes the socket with 4009
        else:
            writer.cancel()


async def trigger(request: Request) -> Response:
    ok = 0
    for room, data in trigger_events(orjson.loads(await request.body())):
        fan_out(room, "message", data, "server")
        ok += 1
        await asyncio.sleep(0)  # as dialogue.trigger does: let the writers run between events
    return Response(orjson.dumps({"ok": ok, "errors": 0}), media_type="application/json")


async def gc_stats(_: Request) -> Response:
    return Response(orjson.dumps(watch.snapshot("default")), media_type="application/json")


async def objects(_: Request) -> Response:
    return Response(orjson.dumps(objects_report()), media_type="application/json")


async def gc_reset(_: Request) -> Response:
    watch.reset()
    return Response(b"{}", media_type="application/json")


app = Starlette(routes=[
    WebSocketRoute("/ws", endpoint),
    Route("/_bench/trigger", trigger, methods=["POST"]),
    Route("/_bench/gc", gc_stats),
    Route("/_bench/gc/reset", gc_reset, methods=["POST"]),
    Route("/_bench/objects", objects),
])
