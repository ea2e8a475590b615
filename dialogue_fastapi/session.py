"""A WebSocket session: read frames, run commands in order, write replies.

One connection is one task group: the reader, the writer and the idle
watcher; the first to finish cancels the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from starlette.websockets import WebSocket

from .connection import Connection
from .errors import BadRequest, CloseCode, DialogueError, InternalError, PayloadTooLarge
from .hooks import correlation_id
from .ops import OPS
from .runtime import Runtime

logger = logging.getLogger("dialogue_fastapi")
HARD_SIZE_FACTOR = 4  # frames above 4x max_message_size close the socket (1009)
CLOSE_GRACE = 0.5  # seconds a closing connection gets to flush before it is cut


class WebSocketTransport:
    """Frames to one WebSocket, at the ASGI level."""

    kind = "websocket"

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def send(self, text: str) -> None:
        await self._ws.send({"type": "websocket.send", "text": text})

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # the peer may already be gone
            await self._ws.close(code, reason[:120])


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


class WebSocketSession:
    """Runs one accepted WebSocket until either side closes it."""

    def __init__(self, runtime: Runtime, websocket: WebSocket, conn: Connection) -> None:
        self.rt = runtime
        self.ws = websocket
        self.conn = conn
        self.last_seen = time.monotonic()

    async def run(self) -> None:
        conn, config = self.conn, self.rt.config
        conn.send_frame({"op": "hello", "client_id": conn.client_id, "user_id": conn.user_id,
                         "protocol": 1, "heartbeat": config.heartbeat})
        await self.rt.connected(conn)
        writer = asyncio.create_task(conn.run_writer())
        tasks: list[asyncio.Task[Any]] = [writer, asyncio.create_task(self._read())]
        if config.idle_timeout() is not None:
            tasks.append(asyncio.create_task(self._watch_idle()))
        tasks.append(asyncio.create_task(conn.closing.wait()))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if conn.closed and not writer.done():
                # let the writer send what is queued, the disconnect frame and the close;
                # a peer that reads nothing (slow consumer) is cut after the grace period
                await asyncio.wait([writer], timeout=CLOSE_GRACE)
                if not writer.done():
                    writer.cancel()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await asyncio.wait_for(
                            conn.transport.close(conn.close_code or CloseCode.NORMAL, "closed"),
                            CLOSE_GRACE)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.rt.disconnected(conn)

    async def _read(self) -> None:
        receive = self.ws.receive
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            self.last_seen = time.monotonic()
            text = message.get("text")
            if text is None:
                self.conn.close(CloseCode.PROTOCOL_VIOLATION,
                                "binary frames are not part of protocol v1; send JSON text")
                return
            await self._handle(text)
            if self.conn.closed:
                return

    async def _handle(self, text: str) -> None:
        limit = self.rt.config.max_message_size
        size = len(text)
        if size * 4 > limit:  # UTF-8 needs at most 4 bytes a character
            size = len(text.encode())
        if size > limit * HARD_SIZE_FACTOR:
            self.conn.close(CloseCode.TOO_LARGE, f"frame of {size} bytes; the limit is {limit}")
            return
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self._error(None, BadRequest(f"malformed JSON: {exc}"))
            return
        if not isinstance(frame, dict):
            self._error(None, BadRequest("a command must be a JSON object with an 'op'"))
            return
        cmd_id = frame.get("id")
        if cmd_id is not None and (not isinstance(cmd_id, int) or isinstance(cmd_id, bool)):
            self._error(None, BadRequest("'id' must be an integer"))
            return
        if size > limit:
            self._error(cmd_id, PayloadTooLarge(f"frame of {size} bytes; the limit is {limit}"))
            return
        if json_depth(frame) > self.rt.config.max_json_depth:
            self._error(cmd_id, BadRequest(
                f"JSON nested deeper than {self.rt.config.max_json_depth} levels"))
            return
        await self._dispatch(cmd_id, frame)

    async def _dispatch(self, cmd_id: int | None, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        handler = OPS.get(op) if isinstance(op, str) else None
        if handler is None:
            known = ", ".join(OPS)
            message = "missing 'op'" if op is None else f"unknown op {op!r}"
            self._error(cmd_id, BadRequest(f"{message}; known ops: {known}"))
            return
        replied = False

        def reply(result: dict[str, Any]) -> None:
            nonlocal replied
            replied = True
            if cmd_id is not None:
                self.conn.send_frame({"id": cmd_id, "ok": True, "result": result})

        try:
            result = await handler(self.rt, self.conn, frame, reply)
        except DialogueError as exc:
            self._error(cmd_id, exc)
            return
        except Exception:
            cid = correlation_id()
            logger.exception("op %s failed [%s]", op, cid)
            self._error(cmd_id, InternalError(f"internal error; correlation id {cid}",
                                              correlation_id=cid))
            return
        if not replied:
            reply(result or {})

    def _error(self, cmd_id: int | None, error: DialogueError) -> None:
        if cmd_id is None:
            self.conn.send_frame({"op": "error", "error": error.to_dict()})
        else:
            self.conn.send_frame({"id": cmd_id, "ok": False, "error": error.to_dict()})

    async def _watch_idle(self) -> None:
        timeout = self.rt.config.idle_timeout() or 0.0
        while True:
            remaining = self.last_seen + timeout - time.monotonic()
            if remaining <= 0:
                self.conn.close(CloseCode.HEARTBEAT_TIMEOUT,
                                f"no frame from the client for {timeout:g} s; send 'ping'")
                return
            await asyncio.sleep(remaining)
