"""A WebSocket session: read frames, run commands in order, write replies.

One connection is one task group: the reader, the writer and the idle
watcher; the first to finish cancels the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import orjson
from starlette.websockets import WebSocket

from ..core.background import BackgroundTask
from ..core.errors import (
    BadRequest,
    CloseCode,
    DialogueError,
    PayloadTooLarge,
    RateLimited,
)
from ..core.outages import is_outage, protocol_error
from ..core.rules import too_deep
from ..node.connection import Connection
from ..publish.lane import PublishLane, Turn
from ..runtime import Runtime
from ..usecases import Caller, UseCases
from .ops import OPS

logger = logging.getLogger("dialogue_fastapi")
HARD_SIZE_FACTOR = 4  # frames above 4x max_message_size close the socket (1009)
YIELD_ABOVE = 64  # queued frames above which the reader yields to the writer after a command
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


class WebSocketSession:
    """Runs one accepted WebSocket until either side closes it."""

    def __init__(
        self, runtime: Runtime, usecases: UseCases, websocket: WebSocket, conn: Connection
    ) -> None:
        self.rt = runtime
        self.uc = usecases
        self._caller = Caller.of(conn)  # the same for every command without a lane turn
        self.ws = websocket
        self.conn = conn
        self._writer: asyncio.Task[None] | None = None
        self._violations: deque[float] = deque()  # times of recent rate-limit refusals
        # publishes in flight per connection, where the broker's publish is a round trip
        self._lane = PublishLane() if runtime.pipelined_publishes else None
        self._cutter: asyncio.Task[None] | None = None
        self._cut = False

    async def run(self) -> None:
        """Read in this task, write in one more: two tasks a connection, so that
        thousands of idle connections stay cheap for memory and the collector."""
        conn, config = self.conn, self.rt.config
        conn.send_frame(conn.hello(config.heartbeat))
        try:
            await self.rt.connected(conn)
        except Exception as exc:
            if not is_outage(exc):
                raise
            logger.warning("refusing %s: backend unavailable (%s: %s)", conn.client_id,
                           type(exc).__name__, exc,
                           extra={"client_id": conn.client_id, "user_id": conn.identity.user_id})
            conn.close(CloseCode.TRY_AGAIN_LATER, "a backend is unavailable; reconnect later")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.run_writer(), CLOSE_GRACE)
            return
        writer = self._writer = asyncio.create_task(conn.run_writer())
        reader = asyncio.current_task()
        conn.on_close = lambda: self._start_cut(reader)
        try:
            await self._read()
        except asyncio.CancelledError:
            if not self._cut or reader is None:
                raise
            reader.uncancel()
        finally:
            conn.on_close = None
            if self._lane is not None:
                await self._lane.close(CLOSE_GRACE)  # acks of what is in flight, if they come
            if conn.closed and not writer.done():
                # the writer still sends what is queued, the disconnect frame and the close
                await asyncio.wait([writer], timeout=CLOSE_GRACE)
            for task in (writer, self._cutter):
                if task is not None and task is not reader:
                    task.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await self.rt.disconnected(conn)

    def _start_cut(self, reader: asyncio.Task[Any] | None) -> None:
        if self._cutter is None:
            self._cutter = asyncio.create_task(self._cut_when_stuck(reader))

    async def _cut_when_stuck(self, reader: asyncio.Task[Any] | None) -> None:
        """A server-side close must end the session even if the peer reads nothing."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait([writer], timeout=CLOSE_GRACE)
            if not writer.done():  # stuck on a peer that reads nothing (slow consumer)
                writer.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(
                        self.conn.transport.close(self.conn.close_code or CloseCode.NORMAL,
                                                  "closed"), CLOSE_GRACE)
        await asyncio.sleep(CLOSE_GRACE)  # time for the peer's close to reach the reader
        if reader is not None and not reader.done():
            self._cut = True
            reader.cancel()

    async def _read(self) -> None:
        receive, conn = self.ws.receive, self.conn
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            conn.last_seen = time.monotonic()
            text = message.get("text")
            if text is None:
                conn.close(CloseCode.PROTOCOL_VIOLATION,
                           "binary frames are not part of protocol v1; send JSON text")
                return
            await self._handle(text)
            if conn.closed:
                return
            if conn.queued > YIELD_ABOVE:  # a burst of commands: let the writer send the replies
                await asyncio.sleep(0)

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
        # the frame object is one level above data and meta, whose depth the use case checks
        if too_deep(frame, text, self.rt.config.max_json_depth + 1):
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
        lane = self._lane
        if lane is not None:
            if op == "publish":  # in flight with the connection's other publishes, in order
                await lane.start(lambda turn: self._run_op(cmd_id, op, handler, frame, turn))
                return
            await lane.drain()  # any other command sees the publishes sent before it
        await self._run_op(cmd_id, op, handler, frame)

    async def _run_op(
        self, cmd_id: int | None, op: Any, handler: Any, frame: dict[str, Any],
        turn: Turn | None = None,
    ) -> None:
        replied = False

        def reply(result: dict[str, Any]) -> None:
            nonlocal replied
            replied = True
            if cmd_id is not None:
                self.conn.send_frame({"id": cmd_id, "ok": True, "result": result})

        metrics = self.rt.metrics
        started = time.perf_counter() if metrics.enabled else 0.0
        code = "ok"
        try:
            caller = self._caller if turn is None else Caller.of(self.conn, turn)
            result = await handler(self.uc, caller, frame, reply)
        except DialogueError as exc:
            code = exc.code
            self._error(cmd_id, exc)
            if isinstance(exc, RateLimited):
                self._violation()
            return
        except Exception as exc:
            error = protocol_error(exc, f"op {op}")
            code = error.code
            self._error(cmd_id, error)
            return
        finally:
            if metrics.enabled:  # one report per command (op is one of OPS: a bounded label)
                metrics.command(op, code, time.perf_counter() - started)
        if not replied:
            reply(result or {})

    def _violation(self) -> None:
        """Count a rate-limit refusal; too many within the window close the connection (4008)."""
        limiter = (self.conn.tools or self.rt.publish_tools()).limiter  # the connection's own
        most, seconds = limiter.max_violations, limiter.violation_window
        if most is None:
            return
        now = time.monotonic()
        window = self._violations
        window.append(now)
        while window and window[0] < now - seconds:
            window.popleft()
        if len(window) >= most:
            self.conn.close(CloseCode.RATE_LIMIT_VIOLATIONS,
                            f"{len(window)} rate-limit violations in {seconds:g} s")

    def _error(self, cmd_id: int | None, error: DialogueError) -> None:
        if cmd_id is None:
            self.conn.send_frame({"op": "error", "error": error.to_dict()})
        else:
            self.conn.send_frame({"id": cmd_id, "ok": False, "error": error.to_dict()})


class IdleSweeper:
    """One task for the whole node closes connections silent past the idle timeout
    (4002), instead of a watcher task per connection."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        timeout = runtime.config.idle_timeout()
        self._background = (
            BackgroundTask("dialogue-idle-sweeper", lambda: self._sweep(timeout))
            if timeout is not None else None
        )

    def start(self) -> None:
        if self._background is not None:
            self._background.start()

    async def stop(self) -> None:
        if self._background is not None:
            await self._background.stop()

    async def _sweep(self, timeout: float) -> None:
        period = min(max(timeout / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(period)
            deadline = time.monotonic() - timeout
            for conn in self.rt.live_connections():
                if conn.transport.kind == "websocket" and conn.last_seen < deadline:
                    conn.close(CloseCode.HEARTBEAT_TIMEOUT,
                               f"no frame from the client for {timeout:g} s; send 'ping'")
