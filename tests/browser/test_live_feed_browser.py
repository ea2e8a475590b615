"""The live feed example in headless Chromium: examples/live_feed over plain ``EventSource``.

The page uses no client library: one ``EventSource`` streams the ``ticker`` and
``jobs`` rooms, and after a drop the browser itself sends ``Last-Event-ID``.
The restart test runs the example as its own process (``python
examples/live_feed/app.py``), stops it with SIGTERM and starts a new process
on the same port and SQLite file, so only what is in the store carries over.
Same browser, launch arguments and skip/fail rules as test_chat_browser.py;
this run saves the screenshot used in the docs (``docs/images/live_feed.png``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from redis_helpers import free_port
from test_chat_browser import IN_CI, MISSING, ROOT, browser  # noqa: F401  (a shared fixture)

from dialogue_fastapi.core.types import Position
from dialogue_fastapi.sse.cursor import encode_cursor
from dialogue_fastapi.testing import LiveServer

if MISSING and not IN_CI:
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)
if not MISSING:
    from playwright.async_api import expect

FEED_APP = ROOT / "examples" / "live_feed" / "app.py"
# the docs' picture is written only when asked (DIALOGUE_UPDATE_SCREENSHOTS=1): a test run
# leaves tracked files unchanged
SCREENSHOT = (ROOT / "docs" / "images" if os.environ.get("DIALOGUE_UPDATE_SCREENSHOTS") == "1"
              else Path(tempfile.gettempdir()) / "dialogue-screenshots") / "live_feed.png"

pytestmark = pytest.mark.timeout(20)
_loads = itertools.count()

OpenFeed = Callable[[str], Awaitable[Any]]


def load_feed_app() -> ModuleType:
    """A fresh copy of examples/live_feed/app.py: its own Dialogue, ticker and jobs."""
    spec = importlib.util.spec_from_file_location(f"live_feed_example_{next(_loads)}", FEED_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def feed() -> AsyncIterator[tuple[ModuleType, LiveServer]]:
    """The example in this process (its SQLite file comes from conftest's DIALOGUE_DATABASE_URL)."""
    module = load_feed_app()
    server = LiveServer(module.app, "127.0.0.1", 0)
    await server.start()
    yield module, server
    await server.stop()


@pytest.fixture
async def open_feed(browser: Any) -> AsyncIterator[OpenFeed]:  # noqa: F811
    """``page = await open_feed(url)``: a fresh context on the page, live; no page errors allowed."""
    contexts: list[Any] = []
    errors: list[str] = []

    async def open_(url: str) -> Any:
        context = await browser.new_context(viewport={"width": 1100, "height": 680})
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(url)
        await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        return page

    yield open_
    for context in contexts:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def received(page: Any, room: str) -> list[dict[str, Any]]:
    """What the page's EventSource delivered in ``room``, in order, before its duplicate check."""
    found: list[dict[str, Any]] = await page.evaluate(
        "room => window.received.filter(r => r.room === room)", room)
    return found


async def wait_for_ticks(page: Any, count: int, *, boot: str | None = None, timeout: float = 5000) -> None:
    await page.wait_for_function(
        "([count, boot]) => window.received.filter("
        "  r => r.room === 'ticker' && (boot === null || r.boot === boot)).length >= count",
        arg=[count, boot], timeout=timeout)


def assert_every_seq_once(events: list[dict[str, Any]]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"a gap or a duplicate: {seqs}"


async def assert_clean(page: Any) -> None:
    feed = await page.evaluate("window.feed")
    assert feed["duplicates"] == 0 and feed["gaps"] == 0 and feed["recoverFailed"] == [], feed
    await expect(page.locator("#notice")).to_be_hidden()


async def test_ticker_updates_and_a_job_reaching_100_percent(feed, open_feed) -> None:
    _, server = feed
    page = await open_feed(server.http_url + "/")
    await wait_for_ticks(page, 4)
    ticks = await received(page, "ticker")
    assert_every_seq_once(ticks)
    assert [t["n"] for t in ticks] == [t["seq"] for t in ticks]  # the count is the room's seq
    await expect(page.locator("#updates li").first).to_have_attribute("data-seq", str(ticks[-1]["seq"]))
    await expect(page.locator("#prices tbody tr").first).to_be_visible()
    assert await page.locator("#prices tbody tr").count() <= 5  # one row per symbol

    await page.click("#start-job")
    job = page.locator("#jobs li").first
    await expect(job.locator(".percent")).to_have_text("100%", timeout=10_000)  # 20 steps of 0.2 s
    await expect(job).to_have_attribute("data-state", "finished")
    await expect(job.locator(".state")).to_have_text("finished")
    assert await job.locator("progress").evaluate("bar => bar.value") == 100
    job_events = await received(page, "jobs")
    assert_every_seq_once(job_events)
    assert [e["event"] for e in job_events] == ["progress"] * 21 + ["done"]

    # the screenshot for the docs: a finished job, another one running, the ticker going
    await page.click("#start-job")
    await expect(page.locator("#jobs li")).to_have_count(2)
    await page.wait_for_function(
        "document.querySelector('#jobs li progress').value >= 45", timeout=5000)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT))
    assert_every_seq_once(await received(page, "ticker"))
    await assert_clean(page)


async def test_a_cursor_that_cannot_be_recovered_shows_a_notice(feed, open_feed) -> None:
    _, server = feed
    page = await open_feed(server.http_url + "/")
    await wait_for_ticks(page, 2)
    await expect(page.locator("#notice")).to_be_hidden()
    # a first request with a kept cursor from another epoch (e.g. the database was reset)
    stale = encode_cursor({"ticker": Position(3, "another-epoch")})
    await page.evaluate("cursor => { source.close(); connect(cursor); }", stale)
    notice = page.locator("#notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("Some ticker updates could not be recovered")
    failed = await page.evaluate("window.feed.recoverFailed")
    assert [f["room"] for f in failed] == ["ticker"]
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    start = failed[0]["position"]["seq"]
    await page.wait_for_function(  # and the stream goes on live from the room's position
        "seq => window.received.some(r => r.room === 'ticker' && r.seq > seq)", arg=start + 1,
        timeout=5000)
    after = [t for t in await received(page, "ticker") if t["seq"] > start]
    assert after[0]["seq"] == start + 1
    assert_every_seq_once(after)
    assert await page.evaluate("window.feed.duplicates") == 0


class FeedProcess:
    """``python examples/live_feed/app.py`` with PORT and DIALOGUE_DATABASE_URL, as a user runs it."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.log = free_port(), tmp / "feed.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIALOGUE_")}
        self.env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port), "PYTHONUNBUFFERED": "1",
                    "DIALOGUE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'feed.db'}"}
        self.cwd = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    async def start(self, timeout: float = 15.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(FEED_APP)], env=self.env, cwd=self.cwd,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                assert self.proc.poll() is None, f"the app ended:\n{self.output()}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/dialogue/ready")).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"the app is not ready:\n{self.output()}"
                await asyncio.sleep(0.1)
        assert f"open {self.url}/" in self.output()  # it prints its address

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, as a deploy or Ctrl-C does; the exit code (killed after ``timeout``)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.terminate()
        try:
            return await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the app did not stop within {timeout} s:\n{self.output()}") from None


@pytest.fixture
async def feed_process(tmp_path: Path) -> AsyncIterator[FeedProcess]:
    process = FeedProcess(tmp_path)
    try:
        yield process
    finally:
        with contextlib.suppress(AssertionError):
            await process.stop()


@pytest.mark.timeout(60)
async def test_a_server_restart_loses_no_update_and_repeats_none(feed_process, open_feed) -> None:
    await feed_process.start()
    page = await open_feed(feed_process.url + "/")
    await wait_for_ticks(page, 4)
    first_boot = (await received(page, "ticker"))[0]["boot"]
    await page.click("#start-job")  # a job running when the server stops
    job = page.locator("#jobs li").first
    await page.wait_for_function(
        "document.querySelector('#jobs li progress')?.value >= 20", timeout=5000)

    # uvicorn exits by re-raising the SIGTERM it handled, after a complete shutdown
    assert await feed_process.stop() in (0, -signal.SIGTERM), feed_process.output()
    assert "Application shutdown complete." in feed_process.output()
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "reconnecting", timeout=5000)
    # the browser tries again after `retry:` (2 s), is refused, and keeps trying by itself
    await page.wait_for_function(
        "window.feed.states.filter(s => s === 'reconnecting').length >= 2", timeout=6000)
    await expect(status).to_have_attribute("data-state", "reconnecting")
    before = await received(page, "ticker")

    await feed_process.start()  # a new process: same port, same SQLite file
    await expect(status).to_have_attribute("data-state", "live", timeout=10_000)
    await page.wait_for_function(  # a tick published by the new process
        "boot => window.received.some(r => r.room === 'ticker' && r.boot !== boot)", arg=first_boot,
        timeout=5000)
    ticks = await received(page, "ticker")
    assert ticks[: len(before)] == before
    new_boot = next(t["boot"] for t in ticks if t["boot"] != first_boot)
    await wait_for_ticks(page, 3, boot=new_boot)
    # the job was cancelled by the shutdown, after the stream had ended: it arrives replayed
    await expect(job).to_have_attribute("data-state", "cancelled", timeout=5000)

    ticks = await received(page, "ticker")
    assert_every_seq_once(ticks)  # every tick exactly once, no gap, across both processes
    assert [t["n"] for t in ticks] == [t["seq"] for t in ticks]
    assert [t["n"] for t in ticks] == list(range(ticks[0]["n"], ticks[0]["n"] + len(ticks)))
    boots = [t["boot"] for t in ticks]
    switch = boots.index(new_boot)
    assert set(boots[:switch]) == {first_boot} and set(boots[switch:]) == {new_boot}, boots
    jobs = await received(page, "jobs")
    assert_every_seq_once(jobs)
    assert jobs[-1]["event"] == "done"

    # the browser resumed from its cursor: the second hello starts where the page was
    hellos = await page.evaluate("window.feed.hellos")
    assert len(hellos) == 2, hellos
    assert hellos[1]["ticker"]["seq"] == before[-1]["seq"]
    assert hellos[1]["ticker"]["epoch"] == hellos[0]["ticker"]["epoch"]  # the store kept the epoch
    assert hellos[1]["jobs"]["seq"] < jobs[-1]["seq"]  # the cancellation came after the stream ended
    await assert_clean(page)
    await expect(page.locator("#updates li").first).to_contain_text(f"server {new_boot}")
