"""One WebSocket session: handshake and hello, reader, heartbeat, request/reply.

A `Connection` lives from one handshake to one close; the client's reconnect
loop builds a new one each time. Replies are matched to requests by ``id``;
an optional ``apply`` callback runs on the reader task before the next frame is
read, which is how a ``join`` reply is applied to its room strictly before any
live event that follows it on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .errors import DialogueClientError
from .handlers import Frame, logger
from .handshake import decode
from .policy import ABNORMAL

Apply = Callable[[Frame], Awaitable[None]]


class Connection:
    """A live session: reads frames, matches replies, keeps the socket warm."""

    def __init__(
        self,
        ws: ClientConnection,
        hello: Frame,
        *,
        on_frame: Callable[[Frame], Awaitable[None]],
        next_id: Callable[[], int],
        ack_timeout: float,
        heartbeat: float | None,
    ) -> None:
        self.ws = ws
        self.hello = hello
        self.close_code: int | None = None
        self.close_reason = ""
        self.advice: bool | None = None  # the disconnect frame's reconnect flag
        self.forced = False  # we dropped it ourselves and want a new one
        self._on_frame = on_frame
        self._next_id = next_id
        self._ack_timeout = ack_timeout
        self._pending: dict[int, tuple[asyncio.Future[Frame], Apply | None]] = {}
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        self._reader = loop.create_task(self._read_loop(), name="dialogue-client-reader")
        interval = heartbeat if heartbeat is not None else hello.get("heartbeat")
        self._heartbeat: asyncio.Task[None] | None = None
        if isinstance(interval, (int, float)) and interval > 0:
            self._heartbeat = loop.create_task(self._beat(float(interval)), name="dialogue-client-heartbeat")

    async def request(
        self, frame: Frame, *, timeout: float | None = None, apply: Apply | None = None
    ) -> Frame:
        """Send ``frame`` with a fresh ``id`` and return the reply's ``result``."""
        request_id = self._next_id()
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, apply)
        try:
            async with asyncio.timeout(self._ack_timeout if timeout is None else timeout):
                await self.send({**frame, "id": request_id})
                return await future
        except TimeoutError:
            op = frame.get("op")
            raise DialogueClientError("TIMEOUT", f"no reply to {op!r} in time") from None
        finally:
            self._pending.pop(request_id, None)

    async def send(self, frame: Frame) -> None:
        """Send one frame as JSON text; `UNAVAILABLE` if the socket is gone."""
        try:
            await self.ws.send(orjson.dumps(frame).decode())
        except ConnectionClosed as exc:
            raise DialogueClientError("UNAVAILABLE", f"connection lost ({exc})") from exc
        self._last_sent = asyncio.get_running_loop().time()

    def abort(self) -> None:
        """Drop the socket at once (dead peer or failed rejoin) and ask for a new one."""
        self.forced = True
        self.ws.transport.abort()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket politely and wait until the reader has finished."""
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)
        # The reader may be parked on a full handler queue: do not wait for ever.
        await asyncio.wait({self._reader}, timeout=1.0)
        if not self._reader.done():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def wait_done(self) -> None:
        """Wait until the socket is closed and the session torn down."""
        await asyncio.shield(self._reader)

    async def _read_loop(self) -> None:
        rcvd: tuple[int, str] | None = None
        try:
            async for raw in self.ws:
                frame = decode(raw)
                if frame is None:
                    continue
                try:
                    await self._handle(frame)
                except Exception:
                    logger.exception("dialogue client: handling a frame failed")
        except ConnectionClosed as exc:
            rcvd = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.wait_closed(), 1.0)
            self._teardown(rcvd)

    def _teardown(self, rcvd: tuple[int, str] | None) -> None:
        code = self.ws.close_code
        if code is None or (code == ABNORMAL and rcvd is not None):
            code, self.close_reason = rcvd if rcvd is not None else (ABNORMAL, "")
        else:
            self.close_reason = self.ws.close_reason or ""
        self.close_code = code
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        error = DialogueClientError("UNAVAILABLE", f"connection lost (close code {self.close_code})")
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    async def _handle(self, frame: Frame) -> None:
        request_id = frame.get("id")
        if isinstance(request_id, int) and ("ok" in frame or frame.get("op") == "error"):
            await self._reply(request_id, frame)
            return
        if frame.get("op") == "disconnect":
            advice = frame.get("reconnect")
            self.advice = advice if isinstance(advice, bool) else None
            logger.info("dialogue client: server disconnects: %s", frame.get("reason"))
        await self._on_frame(frame)

    async def _reply(self, request_id: int, frame: Frame) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return  # late reply to a request that timed out
        future, apply = entry
        if frame.get("ok") is True:
            result = frame.get("result")
            result = result if isinstance(result, dict) else {}
            if apply is not None:
                try:
                    await apply(result)
                except Exception as exc:
                    logger.exception("dialogue client: applying a reply failed")
                    if not future.done():
                        future.set_exception(DialogueClientError("INTERNAL", f"bad reply: {exc!r}"))
                    return
            if not future.done():
                future.set_result(result)
        elif not future.done():
            future.set_exception(DialogueClientError.from_wire(frame.get("error")))

    async def _beat(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._last_sent + interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await self.request({"op": "ping"})
            except DialogueClientError as exc:
                if exc.code == "TIMEOUT":
                    logger.warning("dialogue client: no reply to ping, reconnecting")
                    self.abort()
                if exc.code in ("TIMEOUT", "UNAVAILABLE"):
                    return
