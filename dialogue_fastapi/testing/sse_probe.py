"""An SSE client for tests: ``GET /sse`` with httpx, parsed into messages.

``probe = await SseProbe.open(url, headers=...)`` reads the response headers
and the ``hello``; ``await probe.next()`` returns the next message as a dict
with ``event``, ``id``, ``data`` (parsed JSON) and ``retry``; comment lines
(pings) are counted in ``probe.comments``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import orjson


class SseProbe:
    """One open SSE stream."""

    def __init__(self, client: httpx.AsyncClient, response: httpx.Response) -> None:
        self.client, self.response = client, response
        self.status = response.status_code
        self.headers = response.headers
        self.hello: dict[str, Any] = {}
        self.last_id: str | None = None
        self.comments = 0
        self.messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, headers: dict[str, str] | None = None,
                   hello: bool = True, timeout: float = 5.0) -> SseProbe:
        client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=None))
        try:
            request = client.build_request("GET", url, headers=headers)
            response = await client.send(request, stream=True)
        except BaseException:
            await client.aclose()
            raise
        probe = cls(client, response)
        if response.status_code != 200:
            await response.aread()
            return probe
        probe._reader = asyncio.create_task(probe._read())
        if hello:
            first = await probe.next(timeout=timeout)
            probe.hello = first["data"]
        return probe

    def error(self) -> dict[str, Any]:
        """The error body of a refused stream."""
        body: dict[str, Any] = orjson.loads(self.response.content)["error"]
        return body

    async def _read(self) -> None:
        fields: dict[str, Any] = {}
        data: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data or fields:
                        message = {"event": fields.get("event", "message"), "id": fields.get("id"),
                                   "retry": fields.get("retry"), "raw": "\n".join(data)}
                        message["data"] = orjson.loads(message["raw"]) if data else None
                        if message["id"] is not None:
                            self.last_id = message["id"]
                        await self.messages.put(message)
                    fields, data = {}, []
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            await self.messages.put(None)  # the stream ended

    async def next(self, event: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next message (of ``event``, if given); AssertionError when the stream ended."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.messages.get()
                if message is None:
                    await self.messages.put(None)
                    raise AssertionError("the SSE stream ended")
                if event is None or message["event"] == event:
                    return message

    async def events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The data of the next ``count`` room events (``dialogue`` frames skipped)."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            message = await self.next(timeout=timeout)
            if message["event"] != "dialogue":
                found.append(message["data"])
        return found

    async def ended(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait for the stream to end; the messages that came before the end."""
        rest: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while (message := await self.messages.get()) is not None:
                rest.append(message)
        await self.messages.put(None)
        return rest

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        with contextlib.suppress(Exception):
            await self.response.aclose()
        await self.client.aclose()
