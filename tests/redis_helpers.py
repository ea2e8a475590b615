"""The real Redis for broker tests.

Redis comes from ``DIALOGUE_TEST_REDIS_URL`` (default database 15 of the
local server). Without it the Redis tests are skipped with the reason,
except under ``CI=true`` where they fail. Every test gets its own key
prefix; its keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("DIALOGUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"
_problem: list[str | None] = []


async def redis_problem() -> str | None:
    """Why Redis cannot be used (None: it can); checked once per session."""
    if _problem:
        return _problem[0]
    problem = None
    try:
        from redis.asyncio import Redis
    except ImportError as exc:
        problem = f'{exc.name} is not installed: pip install "dialogue-fastapi[redis]"'
    else:
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            await client.ping()
        except Exception as exc:
            problem = f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__}: {exc})"
        finally:
            await client.aclose()
    _problem.append(problem)
    return problem


async def need_redis() -> None:
    problem = await redis_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"Redis tests cannot run under CI: {problem}", pytrace=False)
    pytest.skip(f"Redis tests skipped: {problem}")


@asynccontextmanager
async def redis_client() -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def delete_prefix(prefix: str) -> None:
    async with redis_client() as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)


@asynccontextmanager
async def fresh_redis_broker(**options: Any) -> AsyncIterator[Any]:
    """A RedisBroker (not started) on its own key prefix, cleaned up afterwards."""
    await need_redis()
    from dialogue_fastapi.brokers.redis import RedisBroker

    prefix = f"dtest{secrets.token_hex(4)}:"
    try:
        yield RedisBroker(REDIS_URL, prefix=prefix, **options)
    finally:
        await delete_prefix(prefix)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of this test only, on a free port, that can be killed and restarted."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.log.parent)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        from redis.asyncio import Redis

        client = Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            async with asyncio.timeout(10):
                while not await _pings(client):
                    await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    def pause(self) -> None:
        """SIGSTOP: the server hangs (connections stay open, nothing is answered)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
            self.proc = None


async def _pings(client: Any) -> bool:
    try:
        return bool(await client.ping())
    except Exception:
        return False


def need_redis_server() -> None:
    if shutil.which("redis-server") is not None:
        return
    reason = "redis-server is not installed: tests that stop or restart Redis run their own"
    if IN_CI:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
