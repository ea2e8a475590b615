"""The chat demo across two server processes, as docker-compose runs it: the unchanged
``examples/chat/app.py`` started twice with ``DIALOGUE_BROKER_URL`` (the real Redis)
and ``DIALOGUE_DATABASE_URL`` (a fresh PostgreSQL database), one browser page on each.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg_helpers import PG_URL, need_postgres
from redis_helpers import REDIS_URL, delete_prefix, free_port, need_redis
from test_chat_browser import CHAT_APP, CHROMIUM, CHROMIUM_ARGS, IN_CI, MISSING, send, sign_in, texts

if MISSING and not IN_CI:
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)
pytestmark = pytest.mark.timeout(60)


class ChatProcess:
    """``python examples/chat/app.py`` on a free port, with the cluster's environment."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name, self.port, self.log = name, free_port(), log
        self.env = {**env, "PORT": str(self.port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(CHAT_APP)], env=self.env,
                                         cwd=self.log.parent, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                assert self.proc.poll() is None, f"{self.name} ended:\n{self.log.read_text()[-3000:]}"
                try:
                    if (await client.get(self.url + "/dialogue/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.log.read_text()[-3000:]}"
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


async def _admin(sql: str) -> None:
    import asyncpg

    url = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def two_chat_nodes(tmp_path: Path) -> AsyncIterator[list[ChatProcess]]:
    await need_redis()
    await need_postgres()
    if MISSING:
        pytest.fail(f"browser tests cannot run under CI: {MISSING}", pytrace=False)
    database = f"dchat_{secrets.token_hex(4)}"
    prefix = f"dchat{secrets.token_hex(4)}:"
    await _admin(f"CREATE DATABASE {database}")
    base, _, _ = PG_URL.rpartition("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALOGUE_")}
    env["DIALOGUE_BROKER_URL"] = f"{REDIS_URL}?prefix={prefix}"
    env["DIALOGUE_DATABASE_URL"] = f"{base}/{database}"
    nodes = [ChatProcess(name, env, tmp_path / f"{name}.log") for name in ("app1", "app2")]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        await delete_prefix(prefix)
        await _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


async def test_two_chat_processes_on_redis_and_postgres_chat_as_one(
    two_chat_nodes: list[ChatProcess],
) -> None:
    from playwright.async_api import async_playwright, expect

    app1, app2 = two_chat_nodes
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages: list[Any] = []
            for name, node in (("alice", app1), ("bob", app2)):
                context = await browser.new_context(viewport={"width": 1100, "height": 640})
                page = await context.new_page()
                page.on("pageerror", lambda exc, name=name: errors.append(f"{name}: {exc}"))
                await page.goto(node.url + "/")
                await sign_in(page, name)
                pages.append(page)
            alice, bob = pages
            for page in pages:  # presence is cluster-wide: each page lists both users
                for user in ("alice", "bob"):
                    await expect(page.locator(f'#presence-list [data-user-id="{user}"]')).to_be_visible()
            await send(alice, "hello from app1")
            await expect(texts(bob)).to_have_text(["hello from app1"])
            await send(bob, "hello from app2")
            for page in pages:
                await expect(texts(page)).to_have_text(["hello from app1", "hello from app2"])
        finally:
            await browser.close()
    assert not errors, f"uncaught errors in the pages: {errors}"
    # both messages are stored once in the shared database, in one seq order
    async with httpx.AsyncClient(timeout=5) as client:
        found = await client.get(app2.url + "/dialogue/rooms/lobby/history?event=message",
                                 headers={"X-User": "carol"})
    assert found.status_code == 200, found.text
    events = found.json()["events"]
    assert [e["data"]["text"] for e in events] == ["hello from app1", "hello from app2"]
    assert events[0]["seq"] < events[1]["seq"]
