"""The browser client with a token function in headless Chromium: it trades the token (as
``Authorization: Bearer``) for a single-use ticket before each (re)connect and opens
``/ws?ticket=...``, so the token never appears in a WebSocket URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.requests import HTTPConnection
from test_chat_browser import IN_CI, MISSING, browser  # noqa: F401  (a shared fixture)

from dialogue_fastapi import Dialogue, Identity, Reject, RoomConfig
from dialogue_fastapi.testing import LiveServer

if MISSING and not IN_CI:
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)

pytestmark = pytest.mark.timeout(20)

CONNECT = """async ([token, drop]) => {
  const { connect } = await import("/dialogue/client.js");
  let client;
  try {
    client = await connect("/dialogue/ws", { token: () => token, backoffInitial: 10, backoffMax: 50 });
  } catch (err) {
    return { code: err.code, message: err.message };
  }
  await client.join("chat");
  if (drop) {
    const reconnected = new Promise((resolve) => client.onState((s) => s === "connected" && resolve()));
    client._ws.close(3000, "test drop");
    await reconnected;
  }
  const user = client.hello.user_id;
  client.close();
  return { user };
}"""


@pytest.fixture
async def site() -> AsyncIterator[tuple[LiveServer, list[str]]]:
    """A page at ``/`` beside the dialogue router; each authenticate call records its URL."""
    calls: list[str] = []

    def authenticate(conn: HTTPConnection) -> Identity:
        calls.append(str(conn.url.path) + ("?" + conn.url.query if conn.url.query else ""))
        token = conn.headers.get("authorization", "").removeprefix("Bearer ")
        if token != "t-alice":
            raise Reject("bad token")
        return Identity("alice")

    dialogue = Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=authenticate)
    app = FastAPI()
    app.include_router(dialogue.router, prefix="/dialogue")

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>ticket</title>")

    server = LiveServer(app, "127.0.0.1", 0)
    await server.start()
    yield server, calls
    await server.stop()


async def run(chromium: Any, server: LiveServer, token: str, drop: bool = False) -> tuple[Any, list[str]]:
    page = await chromium.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        await page.goto(server.http_url + "/")
        return await page.evaluate(CONNECT, [token, drop]), sockets
    finally:
        await page.close()


async def test_a_token_function_connects_with_a_fresh_ticket_each_time(browser, site):  # noqa: F811
    server, calls = site
    result, sockets = await run(browser, server, "t-alice", drop=True)
    assert result == {"user": "alice"}
    assert calls == ["/dialogue/tickets", "/dialogue/tickets"]  # never on /ws: tickets stood in
    assert len(sockets) == 2 and len(set(sockets)) == 2
    for url in sockets:
        assert "?ticket=" in url and "t-alice" not in url and "token" not in url


async def test_a_refused_token_rejects_connect_with_unauthorized(browser, site):  # noqa: F811
    server, calls = site
    result, sockets = await run(browser, server, "t-mallory")
    assert result == {"code": "UNAUTHORIZED", "message": "bad token"}
    assert sockets == [] and calls == ["/dialogue/tickets"]
