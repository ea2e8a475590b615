"""Small helpers shared by the protocol tests (users by token, hook recorders)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Any

import pytest
from redis_helpers import IN_CI
from starlette.requests import HTTPConnection

from dialogue_fastapi import Identity
from dialogue_fastapi.testing import LiveServer


def authenticate(conn: HTTPConnection) -> Identity:
    """Different users by ``?token=<user id>`` (the protocol allows a token query) or by
    ``Authorization: Bearer <user id>`` (what the Python client sends)."""
    header = conn.headers.get("authorization", "")
    if "token" not in conn.query_params and header.startswith("Bearer "):
        return Identity(header.removeprefix("Bearer "))
    return Identity(conn.query_params["token"])


def ws_as(srv: LiveServer, user: str, path: str = "/ws") -> str:
    """The WebSocket URL of ``srv`` for ``user`` (with :func:`authenticate`)."""
    return srv.ws_url(path) + "?token=" + user


class Calls:
    """Records hook calls; ``sync()`` and ``async_()`` build hooks of both kinds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for hook, args in self.calls if hook == name]

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        self.calls.append((name, args))
        self._changed.set()

    def sync(self, name: str, result: Any = None) -> Callable[..., Any]:
        def hook(*args: Any) -> Any:
            self._record(name, args)
            return result

        return hook

    def async_(self, name: str, result: Any = None) -> Callable[..., Any]:
        async def hook(*args: Any) -> Any:
            await asyncio.sleep(0)
            self._record(name, args)
            return result

        return hook

    async def wait_for(self, name: str, count: int = 1, timeout: float = 2.0) -> list[tuple[Any, ...]]:
        """Wait until ``name`` was called at least ``count`` times."""
        async with asyncio.timeout(timeout):
            while len(self.named(name)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.named(name)


async def serve_dialogue(dialogue: Any, port: int = 0) -> LiveServer:
    """A real server for ``dialogue`` (its router at the root), on ``port`` (0: a free one) -
    started again on the same port to test restarts."""
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(dialogue.router)
    server = LiveServer(app, "127.0.0.1", port)
    await server.start()
    return server


def need_module(name: str, package: str) -> None:
    """Skip (fail under CI=true) when ``name`` cannot be imported."""
    if importlib.util.find_spec(name) is not None:
        return
    message = f"{package} is not installed (pip install {package})"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
