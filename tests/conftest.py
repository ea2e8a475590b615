"""Shared fixtures: real uvicorn servers on free ports and raw protocol probes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI

from dialogue_fastapi import Dialogue
from dialogue_fastapi.testing import LiveServer, WsProbe

ServeFactory = Callable[..., Awaitable[LiveServer]]
ProbeFactory = Callable[..., Awaitable[WsProbe]]


def app_for(dialogue: Dialogue, prefix: str = "") -> FastAPI:
    app = FastAPI()
    app.include_router(dialogue.router, prefix=prefix)
    return app


@pytest.fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """``srv = await serve(dialogue_or_app, prefix="")``: a real uvicorn, stopped after the test."""
    servers: list[LiveServer] = []

    async def start(target: Any, prefix: str = "") -> LiveServer:
        app = app_for(target, prefix) if isinstance(target, Dialogue) else target
        server = LiveServer(app, "127.0.0.1", 0)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def probe() -> AsyncIterator[ProbeFactory]:
    """``p = await probe(url, **connect_kwargs)``: a raw client, closed after the test."""
    opened: list[WsProbe] = []

    async def open_probe(url: str, **kwargs: Any) -> WsProbe:
        p = await WsProbe.open(url, **kwargs)
        opened.append(p)
        return p

    yield open_probe
    for p in opened:
        with contextlib.suppress(Exception):
            await p.close()


@pytest.fixture
async def webpush_service() -> AsyncIterator[Any]:
    """A fake Web Push service on 127.0.0.1 that verifies VAPID and decrypts
    (``tests/push/fakes/webpush.py``), stopped after the test."""
    from push.fakes.webpush import FakeWebPush

    fake = FakeWebPush()
    await fake.start()
    yield fake
    await fake.stop()
