"""Helpers for testing apps built on dialogue-fastapi against a real server.

``live_server(app)`` runs uvicorn in the current event loop on a free port
of 127.0.0.1 and can restart it on the same port; ``WsProbe`` is a raw
protocol client that matches replies to ids and keeps other frames in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from websockets.asyncio.client import ClientConnection, connect


@dataclass
class LiveServer:
    """A running uvicorn: its address, and stop/start on the same port."""

    app: Any
    host: str
    port: int
    ws: str = "websockets-sansio"
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    async def start(self, timeout: float = 10.0) -> None:
        # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets of such a
        # listener; with proto 0 back-to-back frames wait ~40 ms for a delayed ACK
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", ws=self.ws, lifespan="on",
            ws_per_message_deflate=False, timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(timeout):
            while not server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)

    async def stop(self, timeout: float = 15.0) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        if not self._task.done():
            self._server.force_exit = True
            self._task.cancel()
        self._server = self._task = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@contextlib.asynccontextmanager
async def live_server(app: Any, *, host: str = "127.0.0.1", port: int = 0,
                      ws: str = "websockets-sansio") -> AsyncIterator[LiveServer]:
    """Run ``app`` under a real uvicorn for the duration of the block."""
    server = LiveServer(app, host, port, ws)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class ProbeError(Exception):
    """An ``ok: false`` reply: ``.code``, ``.message``, ``.error`` (the whole object)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = str(error.get("code"))
        self.message = str(error.get("message"))
        self.error = error


class WsProbe:
    """A raw protocol-v1 client for tests: replies by id, other frames in a queue."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, hello: bool = True, **kwargs: Any) -> WsProbe:
        ws = await connect(url, compression=None, max_size=None, **kwargs)
        probe = cls(ws)
        if hello:
            probe.hello = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        probe._reader = asyncio.create_task(probe._read())
        return probe

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                frame = orjson.loads(raw)
                future = self._replies.pop(frame["id"], None) if "id" in frame else None
                if future is not None and not future.done():
                    future.set_result(frame)
                else:
                    await self.frames.put(frame)

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def reply(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send a command and return the whole reply frame."""
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        await self.ws.send(orjson.dumps({"op": op, "id": self._next_id, **fields}).decode())
        return await asyncio.wait_for(future, timeout)

    async def request(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send a command; return its result or raise :class:`ProbeError`."""
        frame = await self.reply(op, timeout, **fields)
        if not frame.get("ok"):
            raise ProbeError(frame.get("error") or {})
        result: dict[str, Any] = frame.get("result") or {}
        return result

    async def next(self, op: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next unsolicited frame (optionally the next one with this ``op``)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                if op is None or frame.get("op") == op:
                    return frame

    async def events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [await self.next("event", timeout) for _ in range(count)]

    async def nothing(self, op: str = "event", wait: float = 0.2) -> bool:
        """True if no frame with ``op`` arrives within ``wait`` seconds."""
        try:
            await self.next(op, wait)
        except TimeoutError:
            return True
        return False

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server to close; returns (code, reason)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code, self.ws.close_reason or ""

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
