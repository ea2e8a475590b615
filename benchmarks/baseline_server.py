"""The ceiling for ``fanout.py``: a plain Starlette WebSocket broadcast server.

It speaks the subset of the dialogue protocol the benchmark uses (``hello`` on
accept, ``join``, ``publish`` -> ``event`` to every member plus a reply), with
the fan-out shape dialogue-fastapi is meant to have: a dict of rooms, one
bounded send queue and one writer task per connection, and each published
event encoded once with orjson. A connection whose queue overflows is closed
with 4009 (slow consumer), as the protocol says.

Run alone: ``uvicorn baseline_server:app --app-dir benchmarks --ws websockets-sansio``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

QUEUE_LIMIT = 1024
SLOW_CONSUMER = 4009

_client_ids = itertools.count(1)
rooms: dict[str, set[Connection]] = {}
seqs: dict[str, int] = {}


class Connection:
    """One socket: a bounded queue of encoded frames drained by a writer task."""

    __slots__ = ("overflowed", "queue", "rooms", "ws")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
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
            rooms.get(room, set()).discard(self)
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


def handle(conn: Connection, cmd: dict[str, Any]) -> None:
    op, cmd_id, room = cmd.get("op"), cmd.get("id"), cmd.get("room")
    if op == "publish" and isinstance(room, str):
        if room not in conn.rooms:
            conn.error(cmd_id, "NOT_IN_ROOM", f"not in room {room!r}")
            return
        seq = seqs[room] = seqs.get(room, 0) + 1
        ts = time.time_ns() // 1_000_000
        envelope: dict[str, Any] = {
            "op": "event",
            "room": room,
            "event": cmd.get("event"),
            "data": cmd.get("data"),
            "from": "anon",
            "ts": ts,
            "seq": seq,
            "meta": {},
        }
        text = orjson.dumps(envelope).decode()
        for member in tuple(rooms[room]):
            member.push(text)
        conn.reply(cmd_id, {"seq": seq, "ts": ts})
    elif op == "join" and isinstance(room, str):
        rooms.setdefault(room, set()).add(conn)
        conn.rooms.add(room)
        conn.reply(cmd_id, {})
    elif op == "ping":
        if cmd_id is not None:
            conn.reply(cmd_id, {})
    else:
        conn.error(cmd_id, "BAD_REQUEST", f"unsupported op {op!r}")


async def endpoint(ws: WebSocket) -> None:
    await ws.accept()
    conn = Connection(ws)
    writer = asyncio.create_task(conn.write_loop())
    hello = {
        "op": "hello",
        "client_id": f"c_{next(_client_ids):x}",
        "user_id": "anon",
        "protocol": 1,
        "heartbeat": 25,
    }
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


app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
