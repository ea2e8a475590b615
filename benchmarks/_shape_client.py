"""The load generator's connections for ``shape.py``: raw WebSocket clients, two dialects.

Thousands of mostly idle connections must cost the load generator little, so nothing here
goes through ``websockets``: a connection is an ``asyncio.Protocol`` that writes the HTTP
upgrade itself, checks for ``101``, then reads the server's (unmasked, unfragmented) frames
and writes masked ones with a zero key (valid, and the payload stays as is), as
``_rawreader.py`` does. Two dialects of the same commands (join, publish, ping):

- ``DialogueConn``: dialogue's protocol (``shape_server.py`` and ``shape_baseline_server.py``);
- ``SioConn``: Engine.IO 4 / Socket.IO 5 over a WebSocket from the start (``0`` open,
  ``40`` namespace connect with ``auth``, ``42[...]`` events, ``42<id>[...]`` / ``43<id>[...]``
  acks, the server's ``2`` pings answered with ``3``).

Events carry ``data = {"t": time_ns at publish, "i", "k": "g"|"p", "m": 0|1, "text"}``; a
connection counts the measured ones (``m``) it received and the ``Stats`` of the run keep
their latencies (receipt time minus ``t``) and every count.
"""

from __future__ import annotations

import asyncio
import struct
import time
from array import array
from collections import Counter
from typing import Any, cast

import orjson

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
_MASK0 = b"\x00\x00\x00\x00"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # any 16 bytes in base64: the server only checks the form
PAYLOAD_TEXT = "the quick brown fox jumps over the lazy dog, a chat-sized payload"


def client_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", n)
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + struct.pack("!Q", n)
    return head + _MASK0 + payload


class Stats:
    """What every connection of a run adds to (one event loop: plain counters)."""

    def __init__(self, groups: int, users: int) -> None:
        self.delivered = 0  # every event frame
        self.measured = 0  # events of the measured phase (data.m)
        self.lat_group = array("q")  # ns, measured group events
        self.lat_personal = array("q")  # ns, measured personal events
        self.pub_ok = 0
        self.pub_errors: Counter[str] = Counter()
        self.group_expected = [0] * groups  # measured group publishes acked ok, per group
        self.personal_expected = [0] * users  # measured personal events triggered ok, per user
        self.other: Counter[str] = Counter()  # frames that are neither events nor replies
        self.closes: Counter[int | None] = Counter()  # close codes the server sent
        self.frames_in = 0
        self.reads = 0


class RawConn(asyncio.Protocol):
    """One client WebSocket; the dialects say what a text frame means and how commands look."""

    path = "/ws"

    def __init__(self, stats: Stats, user: str, port: int) -> None:
        self.stats, self.user, self.port = stats, user, port
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.buf = b""
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[Any] = loop.create_future()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.pubs: dict[int, int] = {}  # publish id -> group index if measured, else -1
        self.ids = 10
        self.received = 0  # measured events
        self.last_sent = time.monotonic()
        self.lost = False

    # transport -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(
            f"GET {self.target()} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def target(self) -> str:
        return f"{self.path}?user={self.user}"

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        err = ConnectionError(f"connection of {self.user} lost")
        if not self.ready.done():
            self.ready.set_exception(err)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(err)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.buf[: self.buf.find(b"\r\n")]
            if b" 101 " not in status:
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"upgrade refused: {status!r}"))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            data, self.buf = self.buf[end + 4 :], b""
            if not data:
                return
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        stats = self.stats
        stats.reads += 1
        now = time.time_ns()
        while end - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,), head = struct.unpack_from("!H", buf, pos + 2), 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,), head = struct.unpack_from("!Q", buf, pos + 2), 10
            stop = pos + head + length
            if stop > end:
                break
            opcode = buf[pos] & 0x0F
            stats.frames_in += 1
            if opcode == TEXT:
                self.on_text(buf[pos + head : stop], now)
            elif opcode == PING:
                self.write_frame(PONG, buf[pos + head : stop])
            elif opcode == CLOSE:
                code = struct.unpack_from("!H", buf, pos + head)[0] if length >= 2 else None
                stats.closes[code] += 1
                self.close()
                return
            pos = stop
        self.buf = buf[pos:]

    def write_frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))
            self.last_sent = time.monotonic()

    def close(self) -> None:
        """A close frame (1000), then the socket."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(CLOSE, struct.pack("!H", 1000)))
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _next_id(self) -> int:
        self.ids += 1
        return self.ids

    def _event(self, data: dict[str, Any], now: int) -> None:
        stats = self.stats
        stats.delivered += 1
        if data.get("m"):
            self.received += 1
            stats.measured += 1
            (stats.lat_group if data.get("k") == "g" else stats.lat_personal).append(now - data["t"])

    def _publish_reply(self, cmd_id: int, ok: bool, code: Any) -> None:
        group = self.pubs.pop(cmd_id, None)
        if group is None:
            self.stats.other["unexpected reply"] += 1
            return
        if ok:
            self.stats.pub_ok += 1
            if group >= 0:
                self.stats.group_expected[group] += 1
        else:
            self.stats.pub_errors[str(code)] += 1

    # what the dialects define ------------------------------------------------------------
    def on_text(self, payload: bytes, now: int) -> None:
        raise NotImplementedError

    async def join(self, room: str) -> None:
        raise NotImplementedError

    def publish(self, room: str, data: dict[str, Any], group: int) -> None:
        raise NotImplementedError

    def ping(self) -> None:
        """An application-level heartbeat, if the protocol wants one from the client."""


class DialogueConn(RawConn):
    """dialogue's protocol: ``hello``, replies by ``id``, ``event`` frames."""

    def on_text(self, payload: bytes, now: int) -> None:
        msg = orjson.loads(payload)
        op = msg.get("op")
        if op == "event":
            self._event(msg["data"], now)
        elif "id" in msg and op is None:
            cmd_id = msg["id"]
            fut = self.pending.pop(cmd_id, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(msg)
            elif cmd_id is not None:
                self._publish_reply(cmd_id, bool(msg.get("ok")), (msg.get("error") or {}).get("code"))
        elif op == "hello":
            if not self.ready.done():
                self.ready.set_result(msg)
        else:
            self.stats.other[str(op)] += 1

    def send(self, obj: dict[str, Any]) -> None:
        self.write_frame(TEXT, orjson.dumps(obj))

    async def join(self, room: str) -> None:
        cmd_id = self._next_id()
        fut = self.pending[cmd_id] = asyncio.get_running_loop().create_future()
        self.send({"op": "join", "id": cmd_id, "room": room})
        reply = await fut
        if not reply.get("ok"):
            raise RuntimeError(f"join {room} refused: {reply.get('error')!r}")

    def publish(self, room: str, data: dict[str, Any], group: int) -> None:
        cmd_id = self._next_id()
        self.pubs[cmd_id] = group
        self.send({"op": "publish", "id": cmd_id, "room": room, "event": "message", "data": data})

    def ping(self) -> None:
        self.send({"op": "ping"})


_DIGITS = frozenset(b"0123456789")


class SioConn(RawConn):
    """Engine.IO 4 + Socket.IO 5, default namespace, WebSocket transport only."""

    path = "/socket.io/"

    def target(self) -> str:
        return f"{self.path}?EIO=4&transport=websocket"

    def on_text(self, payload: bytes, now: int) -> None:
        kind = payload[:1]
        if kind == b"4":  # engine.io message: a socket.io packet
            sub = payload[1:2]
            if sub == b"2":  # event: 42["event", {...}] (no ack id from the server)
                name, body = orjson.loads(payload[2:])[:2]
                if name == "event":
                    self._event(body["data"], now)
                else:
                    self.stats.other[f"event {name}"] += 1
            elif sub == b"3":  # ack: 43<id>[result]
                i = 2
                while i < len(payload) and payload[i] in _DIGITS:
                    i += 1
                cmd_id = int(payload[2:i])
                (result,) = orjson.loads(payload[i:])[:1]
                fut = self.pending.pop(cmd_id, None)
                if fut is not None:
                    if not fut.done():
                        fut.set_result(result)
                else:
                    code = (result.get("error") or {}).get("code")
                    self._publish_reply(cmd_id, bool(result.get("ok")), code)
            elif sub == b"0":  # namespace connected
                if not self.ready.done():
                    self.ready.set_result(orjson.loads(payload[2:] or b"{}"))
            elif sub == b"4":  # connect_error
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"refused: {payload[2:]!r}"))
            else:
                self.stats.other[f"sio {sub!r}"] += 1
        elif kind == b"2":  # engine.io ping
            self.write_frame(TEXT, b"3")
        elif kind == b"0":  # engine.io open: connect to the default namespace
            self.write_frame(TEXT, b"40" + orjson.dumps({"user": self.user}))
        else:
            self.stats.other[f"eio {kind!r}"] += 1

    def _emit(self, cmd_id: int, name: str, body: dict[str, Any]) -> None:
        self.write_frame(TEXT, b"42" + str(cmd_id).encode() + orjson.dumps([name, body]))

    async def join(self, room: str) -> None:
        cmd_id = self._next_id()
        fut = self.pending[cmd_id] = asyncio.get_running_loop().create_future()
        self._emit(cmd_id, "join", {"room": room})
        reply = await fut
        if not reply.get("ok"):
            raise RuntimeError(f"join {room} refused: {reply.get('error')!r}")

    def publish(self, room: str, data: dict[str, Any], group: int) -> None:
        cmd_id = self._next_id()
        self.pubs[cmd_id] = group
        self._emit(cmd_id, "publish", {"room": room, "event": "message", "data": data})


async def open_conn(cls: type[RawConn], stats: Stats, user: str, port: int, timeout: float = 30.0) -> RawConn:
    """Connect, upgrade and wait for the server's greeting (``hello`` / namespace connect)."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: cls(stats, user, port), "127.0.0.1", port)
    try:
        async with asyncio.timeout(timeout):
            await conn.ready
    except BaseException:
        conn.abort()
        raise
    return conn


class Http:
    """One keep-alive HTTP/1.1 connection for the ``/_bench`` routes (a request at a time)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()
        self.retries = 0

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """One request; once more on a new connection if the server had closed this one
        (uvicorn closes a keep-alive connection idle for 5 s)."""
        async with self.lock:
            try:
                return await self._request(method, path, body)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.retries += 1
                if self.writer is not None:
                    self.writer.close()
                self.writer = None
                return await self._request(method, path, body)

    async def _request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing() or (self.reader and self.reader.at_eof()):
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def json(self, method: str, path: str, obj: Any = None) -> Any:
        status, body = await self.request(method, path, b"" if obj is None else orjson.dumps(obj))
        if status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {status} {body[:200]!r}")
        return orjson.loads(body)

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
