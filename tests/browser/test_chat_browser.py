"""The chat example in headless Chromium: examples/chat served by a real uvicorn.

Playwright (async API) drives Debian's ``/usr/bin/chromium``; no browser is
downloaded. Without Chromium or Playwright these tests are skipped, except
under ``CI=true`` where they fail. The run also saves the screenshot used in
the docs (``docs/images/chat.png``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dialogue_fastapi.testing import LiveServer

ROOT = Path(__file__).resolve().parents[2]
CHAT_APP = ROOT / "examples" / "chat" / "app.py"
# the docs' picture is written only when asked (DIALOGUE_UPDATE_SCREENSHOTS=1): a test run
# leaves tracked files unchanged
SCREENSHOT = (ROOT / "docs" / "images" if os.environ.get("DIALOGUE_UPDATE_SCREENSHOTS") == "1"
              else Path(tempfile.gettempdir()) / "dialogue-screenshots") / "chat.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Module-level check: skip without a browser, except in CI where it is a failure.
MISSING: str | None = None
try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:
    MISSING = 'Playwright is not installed: pip install playwright (never "playwright install")'
else:
    if not os.access(CHROMIUM, os.X_OK):
        MISSING = f"{CHROMIUM} not found: apt-get install -y chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
if MISSING and not IN_CI:
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)

pytestmark = pytest.mark.timeout(15)
_loads = itertools.count()

OpenPage = Callable[..., Awaitable["Page"]]


def load_chat_app() -> ModuleType:
    """A fresh copy of examples/chat/app.py: its own Dialogue, rooms and history."""
    spec = importlib.util.spec_from_file_location(f"chat_example_{next(_loads)}", CHAT_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if MISSING:
        pytest.fail(f"browser tests cannot run under CI: {MISSING}", pytrace=False)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def chat() -> AsyncIterator[tuple[ModuleType, LiveServer]]:
    """The chat app module and its live server."""
    module = load_chat_app()
    server = LiveServer(module.app, "127.0.0.1", 0)
    await server.start()
    yield module, server
    await server.stop()


@pytest.fixture
async def open_page(
    browser: Browser, chat: tuple[ModuleType, LiveServer]
) -> AsyncIterator[OpenPage]:
    """``page = await open_page("alice")``: a fresh browser context signed in as alice."""
    _, server = chat
    contexts: list[Any] = []
    errors: list[str] = []

    async def open_(name: str | None = None, path: str = "/") -> Page:
        context = await browser.new_context(viewport={"width": 1100, "height": 640})
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{name}: {exc}"))
        await page.goto(server.http_url + path)
        if name is not None:
            await sign_in(page, name)
        return page

    yield open_
    for context in contexts:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def sign_in(page: Page, name: str) -> None:
    await page.fill("#name-input", name)
    await page.click("#login-button")
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")
    await expect(page.locator(f'#presence-list [data-user-id="{name}"]')).to_be_visible()


def texts(page: Page) -> Any:
    return page.locator("#messages .message .text")


async def send(page: Page, text: str) -> None:
    await page.fill("#message-input", text)
    await page.press("#message-input", "Enter")


async def test_message_typed_in_one_page_appears_in_the_other(chat, open_page) -> None:
    dialogue = chat[0].dialogue
    await dialogue.trigger("lobby", "message", {"text": "welcome to the lobby"})
    alice = await open_page("alice")
    bob = await open_page("bob")
    for page in (alice, bob):  # history arrives in the join reply
        await expect(texts(page)).to_have_text(["welcome to the lobby"])
        await expect(page.locator("#messages .message .author")).to_have_text(["server"])

    await alice.fill("#message-input", "hello bob")  # typing, not sent yet
    await expect(bob.locator("#typing-indicator")).to_have_text("alice is typing…")
    await expect(alice.locator("#typing-indicator")).to_have_text("")
    await expect(bob.locator("#typing-indicator")).to_have_text("", timeout=6000)  # stopped typing

    await alice.press("#message-input", "Enter")
    for page in (alice, bob):
        await expect(texts(page)).to_have_text(["welcome to the lobby", "hello bob"])
        last = page.locator("#messages .message").last
        await expect(last.locator(".author")).to_have_text("alice")
        await expect(last.locator("time")).to_have_text(re.compile(r"\d{1,2}:\d{2}"))
    await expect(alice.locator("#messages .message.mine")).to_have_count(1)
    await expect(alice.locator("#message-input")).to_have_value("")
    await send(bob, "hi alice")
    await expect(texts(alice)).to_have_text(["welcome to the lobby", "hello bob", "hi alice"])


async def test_presence_lists_both_users(open_page) -> None:
    alice = await open_page("alice")
    bob = await open_page("bob")
    for page in (alice, bob):
        await expect(page.locator("#presence-list .presence-user .name")).to_have_text(["alice", "bob"])
        await expect(page.locator("#presence-count")).to_have_text("· 2")
    await expect(alice.locator('#presence-list [data-user-id="alice"] .you')).to_have_text("(you)")

    # the screenshot for the docs: two users talking
    await send(alice, "Hi Bob! Did the deploy go out?")
    await send(bob, "Yes, ten minutes ago. Everything is green.")
    await send(alice, "Great, thanks!")
    await expect(texts(alice)).to_have_count(3)
    await bob.fill("#message-input", "See you at")
    await expect(alice.locator("#typing-indicator")).to_have_text("bob is typing…")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await alice.screenshot(path=str(SCREENSHOT))

    await bob.context.close()  # bob leaves: presence_leave reaches alice
    await expect(alice.locator("#presence-list .presence-user")).to_have_count(1)
    await expect(alice.locator('#presence-list [data-user-id="alice"]')).to_be_visible()


async def test_restart_reconnects_and_shows_missed_messages_once(chat, open_page) -> None:
    dialogue, server = chat[0].dialogue, chat[1]
    alice = await open_page("alice")
    bob = await open_page("bob")
    await send(alice, "before the restart")
    for page in (alice, bob):
        await expect(texts(page)).to_have_text(["before the restart"])
        await expect(page.locator("#connection-banner")).to_be_hidden()

    # srv.restart() in two halves, so that the server publishes while the pages are away
    await server.stop()
    for page in (alice, bob):
        await expect(page.locator("#connection-banner")).to_have_text("Reconnecting…")
    missed = [f"sent while you were away {i}" for i in range(1, 4)]
    for text in missed:
        await dialogue.trigger("lobby", "message", {"text": text})
    await server.start()

    expected = ["before the restart", *missed]
    for page in (alice, bob):
        await expect(page.locator("#connection-banner")).to_be_hidden(timeout=8000)
        await expect(texts(page)).to_have_text(expected)  # every one, once, in order
        seqs = [int(s) for s in await page.locator("#messages .message").evaluate_all(
            "els => els.map(e => e.dataset.seq)")]
        assert seqs == sorted(set(seqs))
    await send(bob, "back again")
    for page in (alice, bob):
        await expect(texts(page)).to_have_text([*expected, "back again"])
    for page in (alice, bob):  # presence was rebuilt with the new connections
        await expect(page.locator("#presence-list .presence-user")).to_have_count(2)


async def test_invalid_message_shows_validation_error(open_page) -> None:
    alice = await open_page("alice")
    error = alice.locator("#error")
    await expect(error).to_be_hidden()
    await alice.click("#send-button")  # empty
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("data-code", "VALIDATION_FAILED")
    await expect(error).to_contain_text("VALIDATION_FAILED")
    await expect(error).to_contain_text("at least 1 character")

    await send(alice, "x" * 2001)
    await expect(error).to_contain_text("at most 2000 characters")
    await expect(alice.locator("#message-input")).to_have_value("x" * 2001)  # kept for editing
    await expect(texts(alice)).to_have_count(0)

    await send(alice, "a valid one")
    await expect(texts(alice)).to_have_text(["a valid one"])
    await expect(error).to_be_hidden()


async def test_blocked_words_are_masked_and_a_flood_is_rate_limited(open_page) -> None:
    alice = await open_page("alice")
    bob = await open_page("bob")
    await send(alice, "no Spam here")
    for page in (alice, bob):  # the content filter masked it on the server
        await expect(texts(page)).to_have_text(["no *** here"])
    for n in range(2, 11):  # the rest of alice's 10 messages in 10 seconds
        await send(alice, f"message {n}")
        await expect(texts(alice)).to_have_count(n)
    error = alice.locator("#error")
    await expect(error).to_be_hidden()
    await send(alice, "one too many")
    await expect(error).to_have_attribute("data-code", "RATE_LIMITED")
    await expect(error).to_contain_text("10 per 10 second")
    await expect(alice.locator("#message-input")).to_have_value("one too many")  # kept to resend
    await send(bob, "bob has a budget of his own")
    await expect(texts(bob)).to_have_count(11)
    await expect(texts(bob).last).to_have_text("bob has a budget of his own")


async def test_rooms_created_and_deleted_at_runtime(open_page) -> None:
    alice = await open_page("alice")
    bob = await open_page("bob")
    await expect(bob.locator("#room-list .room")).to_have_count(2)  # lobby, random
    await alice.fill("#new-room-name", "Book club")
    await alice.click("#create-room-button")
    await expect(alice.locator("#room-title")).to_have_text("Book club")
    await expect(alice.locator("#room-list .room.active")).to_have_attribute("data-room-id", "book-club")
    new_room = bob.locator('#room-list [data-room-id="book-club"]')
    await expect(new_room).to_be_visible()  # room_created reached bob

    await send(alice, "first chapter tonight")
    await new_room.locator(".room-link").click()
    await expect(bob.locator("#room-title")).to_have_text("Book club")
    await expect(texts(bob)).to_have_text(["first chapter tonight"])  # history of a runtime room
    await expect(bob.locator("#presence-list .presence-user")).to_have_count(2)

    await alice.fill("#new-room-name", "Book club")  # taken
    await alice.click("#create-room-button")
    await expect(alice.locator("#error")).to_have_attribute("data-code", "ROOM_EXISTS")

    await alice.locator('#room-list [data-room-id="book-club"] .delete-room').click()
    for page in (alice, bob):
        await expect(page.locator('#room-list [data-room-id="book-club"]')).to_have_count(0)
        await expect(page.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")


async def test_client_module_errors_and_close_codes(chat, open_page, monkeypatch) -> None:
    dialogue = chat[0].dialogue
    presence = dialogue.runtime.broker.presence
    members = presence.members

    async def slow_members(room: str) -> Any:
        if room == "random":  # a server slower than the client's ackTimeout
            await asyncio.sleep(0.5)
        return await members(room)

    monkeypatch.setattr(presence, "members", slow_members)
    page = await open_page()  # the name prompt: the client API used directly
    result = await page.evaluate("""async () => {
        const { connect, DialogueError } = await import("/dialogue/client.js");
        const out = {};
        try { await connect("/dialogue/ws", { token: "" }); }
        catch (e) { out.refused = [e instanceof DialogueError, e.code, e.closeCode, e.message]; }
        const c = await connect("/dialogue/ws", { token: "carol" });
        out.who = [c.userId, typeof c.clientId, c.state];
        const room = await c.join("random", { subscriptions: ["message"] });
        out.subscriptions = room.subscriptions;
        try { await room.publish("nope", {}); } catch (e) { out.notAllowed = e.code; }
        try { await c.join("no-such-room"); } catch (e) { out.noRoom = e.code; }
        const ack = await room.publish("message", { text: "one" });
        out.ack = [typeof ack.seq, typeof ack.ts, room.position.seq === ack.seq];
        out.history = (await room.history({ limit: 5 })).map(m => m.data.text);
        c.options.ackTimeout = 100;
        try { await room.presence(); } catch (e) { out.timeout = e.code; }
        c.options.ackTimeout = 10000;
        out.late = (await room.presence()).count;  // the late reply to the first was ignored
        window.carolStates = [];
        c.onState((s, info) => window.carolStates.push([s, info.code ?? null]));
        window.carol = c;
        return out;
    }""")
    assert result["refused"] == [True, "UNAUTHORIZED", 4001, "enter a name of 1 to 32 characters"]
    assert result["who"] == ["carol", "string", "connected"]
    assert result["subscriptions"] == ["message"]
    assert result["notAllowed"] == "EVENT_NOT_ALLOWED"
    assert result["noRoom"] == "ROOM_NOT_FOUND"
    assert result["ack"] == ["number", "number", True]
    assert result["history"] == ["one"]
    assert result["timeout"] == "TIMEOUT"
    assert result["late"] == 1

    await dialogue.disconnect_user("carol")  # 4004: the client must not reconnect
    await page.wait_for_function("window.carol.state === 'closed'")
    assert await page.evaluate("window.carolStates") == [["closed", 4004]]
    assert await page.evaluate("[window.carol.state, window.carol.closeCode]") == ["closed", 4004]
