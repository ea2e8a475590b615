"""Tokens stay out of logs: the Python client sends its token as a header only (the query
string only when asked), and uvicorn's logs, read from a real uvicorn process, show
``token``, ``ticket`` and ``access_token`` query values as ``***``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RoomConfig
from dialogue_fastapi.auth.log_redaction import QueryRedactor, install_redaction, redact
from dialogue_fastapi.client import DialogueClient
from dialogue_fastapi.testing import SseProbe, WsProbe

TESTS = Path(__file__).resolve().parent
SECRET = "s3cr3t-value"

pytestmark = pytest.mark.timeout(30)


# --- the Python client --------------------------------------------------------------

@pytest.mark.parametrize("in_query", [False, True])
async def test_python_client_sends_the_token_in_the_query_only_when_asked(serve, in_query):
    seen: list[tuple[str | None, str | None]] = []

    def record(conn: HTTPConnection) -> Identity:
        seen.append((conn.query_params.get("token"), conn.headers.get("authorization")))
        return Identity("alice")

    srv = await serve(Dialogue(rooms={"chat": RoomConfig(name="Chat")}, authenticate=record))
    async with DialogueClient(srv.ws_url(), token=SECRET, token_in_query=in_query) as client:
        assert client.user_id == "alice"
    assert seen == [(SECRET if in_query else None, f"Bearer {SECRET}")]


# --- the filter -----------------------------------------------------------------------

def test_redact_replaces_sensitive_query_values_only() -> None:
    line = "/ws?room=a&token=abc&ticket=t-1&Access_Token=x%20y&q=token=keep&refresh_token=r"
    assert redact(line) == "/ws?room=a&token=***&ticket=***&Access_Token=***&q=token=keep&refresh_token=***"
    assert redact("/sse?room=chat") == "/sse?room=chat"
    assert redact('"GET /x?api_key=k1&page=2 HTTP/1.1"') == '"GET /x?api_key=***&page=2 HTTP/1.1"'


def test_install_is_idempotent_and_filters_args() -> None:
    name = "dialogue-test-redaction"
    install_redaction((name,))
    install_redaction((name,))
    logger = logging.getLogger(name)
    assert sum(isinstance(f, QueryRedactor) for f in logger.filters) == 1
    record = logger.makeRecord(name, logging.INFO, __file__, 1, '%s - "WebSocket %s" %d',
                               ("1.2.3.4:5", "/ws?token=abc", 403), None)
    assert logger.filters[0].filter(record)
    assert record.getMessage() == '1.2.3.4:5 - "WebSocket /ws?token=***" 403'


# --- a real uvicorn process --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"uvicorn exited with {proc.returncode}"
            try:
                if (await http.get(base + "/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("uvicorn did not start")


async def exercise(port: int) -> str:
    """A WebSocket, an SSE stream, REST requests and a ticket, with secrets in their URLs."""
    base = f"http://127.0.0.1:{port}/dialogue"
    ws = await WsProbe.open(f"ws://127.0.0.1:{port}/dialogue/ws?token={SECRET}")
    await ws.request("join", room="chat")
    await ws.close()
    refused = await WsProbe.open(f"ws://127.0.0.1:{port}/dialogue/ws?room=x", hello=False)
    await refused.closed(timeout=2)
    stream = await SseProbe.open(f"{base}/sse?room=chat&token={SECRET}")
    assert stream.status == 200
    await stream.close()
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/rooms?token={SECRET}")).status_code == 200
        own = await http.get(f"http://127.0.0.1:{port}/search?q=x&access_token={SECRET}")
        assert own.status_code == 200
        grant = await http.post(f"{base}/tickets?token={SECRET}")
        assert grant.status_code == 201
    ticket = grant.json()["ticket"]
    by_ticket = await WsProbe.open(f"ws://127.0.0.1:{port}/dialogue/ws?ticket={ticket}")
    await by_ticket.close()
    sse_ticket = await SseProbe.open(f"{base}/sse?room=chat&ticket={ticket}")  # used: 401
    await sse_ticket.close()
    assert sse_ticket.status == 401
    return str(ticket)


async def test_uvicorn_logs_show_no_token_or_ticket(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "token_log_app:app", "--app-dir", str(TESTS),
               "--port", str(port), "--ws", "websockets-sansio", "--log-level", "info"]
    proc = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        await wait_ready(f"http://127.0.0.1:{port}/dialogue", proc)
        ticket = await exercise(port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    log = output.decode(errors="replace")
    assert SECRET not in log and ticket not in log, log
    for line in ('"WebSocket /dialogue/ws?token=***" [accepted]',
                 '"GET /dialogue/sse?room=chat&token=*** HTTP/1.1" 200',
                 '"GET /dialogue/rooms?token=*** HTTP/1.1" 200',
                 '"GET /search?q=x&access_token=*** HTTP/1.1" 200',
                 '"POST /dialogue/tickets?token=*** HTTP/1.1" 201',
                 '"WebSocket /dialogue/ws?ticket=***" [accepted]',
                 '"GET /dialogue/sse?room=chat&ticket=*** HTTP/1.1" 401'):
        assert line in log, f"{line!r} not logged:\n{log}"
