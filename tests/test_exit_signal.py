"""SIGTERM and Ctrl+C under the uvicorn command line (and SIGTERM to a gunicorn master with a
uvicorn-worker): every client gets ``disconnect`` 1001 and a 1001 close (not uvicorn's own
1012), the hooks run, and the process exits promptly; Ctrl+C twice still forces the exit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import need_module

from dialogue_fastapi.testing import WsProbe

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def started(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited with {proc.returncode}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("uvicorn did not start")


def run_app(port: int, log: Path, server: str = "uvicorn") -> subprocess.Popen[bytes]:
    if server == "gunicorn":  # a master and one uvicorn-worker; SIGTERM goes to the master
        need_module("gunicorn", "gunicorn")
        need_module("uvicorn_worker", "uvicorn-worker")
        command = ["gunicorn", "signal_app:app", "--chdir", str(TESTS), "--workers", "1",
                   "--worker-class", "uvicorn_worker.UvicornWorker", "--bind", f"127.0.0.1:{port}"]
    else:
        command = ["uvicorn", "signal_app:app", "--app-dir", str(TESTS), "--port", str(port),
                   "--ws", "websockets-sansio"]
    return subprocess.Popen(
        [sys.executable, "-m", *command, "--log-level", "warning"],
        env={**os.environ, "SIGNAL_APP_LOG": str(log)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def output_of(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    assert proc.stdout is not None
    with proc.stdout:
        return proc.stdout.read().decode(errors="replace")


@pytest.mark.parametrize(("server", "sig"), [("uvicorn", signal.SIGTERM), ("uvicorn", signal.SIGINT),
                                           ("gunicorn", signal.SIGTERM)],
                         ids=["uvicorn-SIGTERM", "uvicorn-SIGINT", "gunicorn-SIGTERM"])
async def test_an_exit_signal_says_goodbye_with_1001_first(
    tmp_path: Path, server: str, sig: signal.Signals,
) -> None:
    port, log = free_port(), tmp_path / "hooks.log"
    proc = run_app(port, log, server)
    clients: list[WsProbe] = []
    try:
        await started(port, proc)
        clients = [await WsProbe.open(f"ws://127.0.0.1:{port}/ws") for _ in range(5)]
        for client in clients:
            await client.request("join", room="chat")
        signalled = time.monotonic()
        proc.send_signal(sig)
        for client in clients:
            goodbye = await client.next("disconnect", timeout=5)
            assert (goodbye["code"], goodbye["reconnect"]) == (1001, True)
            code, reason = await client.closed(timeout=5)
            assert code == 1001 and reason == "server shutting down"
        rc = await asyncio.to_thread(proc.wait, 10)
        took = time.monotonic() - signalled
        assert rc in (0, -sig) and took < 5, (rc, took)  # uvicorn re-raises the signal it caught
        ids = {client.hello["client_id"] for client in clients}
        assert set(log.read_text().split()[1::2]) == ids  # every on_disconnected ran
    finally:
        for client in clients:
            await client.close()
        output = output_of(proc)
    assert "Traceback" not in output, output


async def test_ctrl_c_twice_still_forces_the_exit(tmp_path: Path) -> None:
    """A request in flight holds uvicorn's graceful shutdown; a second Ctrl+C, sent while
    the clients are being closed, makes uvicorn force the exit at once."""
    port = free_port()
    proc = run_app(port, tmp_path / "hooks.log")
    clients: list[WsProbe] = []
    try:
        await started(port, proc)
        clients = [await WsProbe.open(f"ws://127.0.0.1:{port}/ws") for _ in range(3)]
        async with httpx.AsyncClient(timeout=30) as http:
            slow = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/slow"))
            await asyncio.sleep(0.2)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(0.3)  # a person's second Ctrl+C: after the goodbyes went out
            proc.send_signal(signal.SIGINT)
            await asyncio.to_thread(proc.wait, 10)
            took = time.monotonic() - signalled
            slow.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await slow
        assert took < 5, f"exited {took:.1f}s after Ctrl+C twice"
    finally:
        for client in clients:
            await client.close()
        output_of(proc)
