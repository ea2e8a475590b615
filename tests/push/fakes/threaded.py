"""An ASGI app under a real uvicorn in its own thread and event loop.

For fakes that code under test may call from a blocking function (google-auth's token
refresh): a fake in the test's own loop could not answer while that loop is blocked.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from dialogue_fastapi.testing import LiveServer


class ThreadedServer:
    """``start()`` runs ``app`` on 127.0.0.1 in a new thread; ``stop()`` ends it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fake-push-service", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the fake did not start")
        if self._error is not None:
            raise RuntimeError("the fake failed to start") from self._error

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def call(self, callback: Any, *args: Any) -> None:
        """Run ``callback(*args)`` in the fake's loop (e.g. to set one of its events)."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(callback, *args)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = LiveServer(self.app, "127.0.0.1", 0)
        try:
            await server.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            raise
        self.port = server.port
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop()
