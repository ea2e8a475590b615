"""Network helpers for the bad-input, auth, REST and connection tests.

Kept apart from conftest.py (owned by another suite): small functions only, no fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from dialogue_fastapi.testing import LiveServer, WsProbe


def dumps(frame: Any) -> str:
    return orjson.dumps(frame).decode()


def nested(depth: int, inner: Any = 0) -> Any:
    """``depth`` levels of nested lists around ``inner`` (a list is one level)."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0, step: float = 0.01) -> None:
    """Poll ``predicate`` until true; fails the test with a TimeoutError otherwise."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)


async def drain_frames(p: WsProbe, wait: float = 0.1) -> list[dict[str, Any]]:
    """Every unsolicited frame that arrives within ``wait`` seconds."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            frames.append(await p.next(timeout=wait))
    return frames


async def open_stalled_reader(url: str, **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    """A WebSocket client that stops reading after ``hello``: tiny socket receive
    buffer and a one-message queue, so the server's writes back up quickly.

    Returns the raw connection and the hello frame. Never call ``recv`` on it
    until the test wants to look at what the server sent last.
    """
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await connect(url, sock=sock, max_queue=1, compression=None, max_size=None, **kwargs)
    hello = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, hello


async def raw_request(ws: ClientConnection, op: str, cmd_id: int, **fields: Any) -> dict[str, Any]:
    """Send one command on a raw connection and read frames until its reply."""
    await ws.send(dumps({"op": op, "id": cmd_id, **fields}))
    async with asyncio.timeout(5):
        while True:
            frame = orjson.loads(await ws.recv())
            if frame.get("id") == cmd_id:
                return dict(frame)


@contextlib.asynccontextmanager
async def http(srv: LiveServer, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=srv.http_url, timeout=5.0, **kwargs) as client:
        yield client


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}"}
