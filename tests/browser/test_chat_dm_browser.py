"""Direct messages in the chat demo, in headless Chromium: the ``dm:{a}:{b}`` family.

Alice and Bob talk in ``dm:alice:bob`` (unread badges come from the notices the
server puts into each member's inbox, ``user:{id}``); Carol is refused on every
transport, with real WebSocket, SSE and HTTP clients; and a conversation survives
a restart of the server process on the same SQLite file.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_chat_browser import (  # noqa: F401  (browser, chat and open_page are shared fixtures)
    IN_CI,
    MISSING,
    SCREENSHOT,
    browser,
    chat,
    open_page,
    send,
    sign_in,
    texts,
)
from test_chat_cluster import ChatProcess

from dialogue_fastapi.testing import ProbeError, SseProbe, WsProbe

if MISSING and not IN_CI:
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)
from playwright.async_api import Browser, Page, expect

pytestmark = pytest.mark.timeout(30)
DM = "dm:alice:bob"


def dm_entry(page: Page, room: str = DM) -> Any:
    return page.locator(f'#dm-list [data-room-id="{room}"]')


async def message_user(page: Page, user: str) -> None:
    """Click the user's name under "Here now": the conversation opens and is joined.

    The title changes at the click, the join completes later: a message sent before
    that is refused by the page ("the room is still being joined"), so wait for it.
    """
    await page.locator(f'#presence-list [data-user-id="{user}"] button.name').click()
    await expect(page.locator("#room-title")).to_have_text(user)
    await page.wait_for_function(
        "(user) => { const id = window.chat.room?.id || ''; "
        "return id.startsWith('dm:') && id.split(':').slice(1).includes(user); }", arg=user)


async def test_alice_and_bob_exchange_direct_messages_with_unread_badges(open_page) -> None:  # noqa: F811
    alice = await open_page("alice")
    bob = await open_page("bob")
    carol = await open_page("carol")
    await expect(alice.locator("#dm-hint")).to_be_visible()
    await message_user(alice, "bob")
    await expect(dm_entry(alice)).to_have_class("room dm active")
    await expect(alice.locator("#dm-hint")).to_be_hidden()
    await expect(alice.locator("#presence-list .presence-user")).to_have_count(1)  # bob is elsewhere

    await send(alice, "psst, bob")
    await expect(texts(alice)).to_have_text(["psst, bob"])
    # bob is in the lobby: the conversation shows up in his sidebar with a badge
    badge = dm_entry(bob).locator(".badge")
    await expect(badge).to_have_text("1")
    await send(alice, "are you there?")
    await expect(badge).to_have_text("2")
    await expect(dm_entry(bob)).to_have_class("room dm unread")
    await expect(texts(bob)).to_have_count(0)  # nothing leaked into the lobby
    await expect(carol.locator("#dm-list .room")).to_have_count(0)  # carol got no notice

    await dm_entry(bob).locator(".room-link").click()  # opening it clears the badge
    await expect(bob.locator("#room-title")).to_have_text("alice")
    await expect(texts(bob)).to_have_text(["psst, bob", "are you there?"])
    await expect(badge).to_have_count(0)
    await expect(dm_entry(bob)).to_have_class("room dm active")
    for page in (alice, bob):  # presence of the conversation: just the two of them
        await expect(page.locator("#presence-list .presence-user .name")).to_have_text(["alice", "bob"])

    await bob.fill("#message-input", "yes")  # typing works in a conversation too
    await expect(alice.locator("#typing-indicator")).to_have_text("bob is typing…")
    await bob.press("#message-input", "Enter")
    await expect(texts(alice)).to_have_text(["psst, bob", "are you there?", "yes"])
    await expect(dm_entry(alice).locator(".badge")).to_have_count(0)  # read as it arrived

    # alice goes back to the lobby; bob's next message is unread for her
    await alice.locator('#room-list [data-room-id="lobby"] .room-link').click()
    await expect(alice.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")
    await message_user(carol, "alice")  # and carol starts a conversation with her
    await send(carol, "Lunch at noon?")
    await expect(dm_entry(alice, "dm:alice:carol").locator(".badge")).to_have_text("1")
    await send(bob, "see you at lunch")
    await expect(dm_entry(alice).locator(".badge")).to_have_text("1")
    await dm_entry(alice).locator(".room-link").click()  # history on reopen
    await expect(texts(alice)).to_have_text(["psst, bob", "are you there?", "yes", "see you at lunch"])
    await expect(dm_entry(alice).locator(".badge")).to_have_count(0)
    mine = alice.locator("#messages .message.mine .text")
    await expect(mine).to_have_text(["psst, bob", "are you there?"])

    # the screenshot for the docs: a conversation, and carol's unread one
    await expect(dm_entry(alice, "dm:alice:carol").locator(".badge")).to_have_text("1")
    await expect(alice.locator("#dm-list .room .room-link")).to_have_text(["bob", "carol"])
    shot = SCREENSHOT.parent / "chat-dm.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    await alice.screenshot(path=str(shot))

    # a reload keeps the conversations and what was read (the inbox's history)
    await bob.reload()
    await expect(bob.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")
    await expect(dm_entry(bob)).to_be_visible()
    await expect(dm_entry(bob)).to_have_class("room dm")  # no badge: he read them all
    await expect(bob.locator("#dm-list .room")).to_have_count(1)


async def test_carol_is_refused_on_every_transport(chat) -> None:  # noqa: F811
    _, server = chat
    ws_url = server.ws_url("/dialogue/ws")
    alice = await WsProbe.open(ws_url + "?token=alice")
    bob = await WsProbe.open(ws_url + "?token=bob")
    carol = await WsProbe.open(ws_url + "?token=carol")
    sse: list[SseProbe] = []
    try:
        await alice.request("join", room=DM)
        ack = await alice.request("publish", room=DM, event="message", data={"text": "just us"})

        # WebSocket: the conversation and the members' inboxes are closed to her
        for room in (DM, "user:alice", "user:bob"):
            with pytest.raises(ProbeError) as refused:
                await carol.request("join", room=room)
            assert refused.value.code == "FORBIDDEN", room
        with pytest.raises(ProbeError) as refused:
            await carol.request("publish", room=DM, event="message", data={"text": "hi"})
        assert refused.value.code == "NOT_IN_ROOM"
        # her own inbox: no notice for her, and she cannot forge one
        assert (await carol.request("join", room="user:carol"))["events"] == []
        with pytest.raises(ProbeError) as refused:
            await carol.request("publish", room="user:carol", event="dm",
                                data={"room": DM, "sender": "bob", "seq": 9})
        assert refused.value.code == "FORBIDDEN"
        # bob's inbox has the notice for the message he has not opened
        inbox = await bob.request("join", room="user:bob")
        assert [e["data"] for e in inbox["events"]] == [
            {"room": DM, "sender": "alice", "seq": ack["seq"]}]
        # one pair is one room: the other order is refused, naming the right id
        with pytest.raises(ProbeError) as refused:
            await bob.request("join", room="dm:bob:alice")
        assert refused.value.code == "BAD_REQUEST" and DM in refused.value.message

        # SSE: a member gets the stream, carol a 403
        sse.append(await SseProbe.open(server.http_url + f"/dialogue/sse?room={DM}&token=bob"))
        assert sse[0].status == 200
        sse.append(await SseProbe.open(server.http_url + f"/dialogue/sse?room={DM}&token=carol"))
        assert sse[1].status == 403 and sse[1].error()["code"] == "FORBIDDEN"

        # REST: history, details, presence and publish
        async with httpx.AsyncClient(base_url=server.http_url + "/dialogue", timeout=5) as http:
            history = await http.get(f"/rooms/{DM}/history", params={"token": "bob"})
            assert history.status_code == 200
            assert [e["data"]["text"] for e in history.json()["events"]] == ["just us"]
            for path in (f"/rooms/{DM}/history", f"/rooms/{DM}", f"/rooms/{DM}/presence",
                         "/rooms/user:bob/history"):
                response = await http.get(path, params={"token": "carol"})
                assert response.status_code == 403, path
                assert response.json()["error"]["code"] == "FORBIDDEN"
            post = await http.post(f"/rooms/{DM}/events", params={"token": "carol"},
                                   json={"event": "message", "data": {"text": "let me in"}})
            assert post.status_code == 403
        assert [e["data"]["text"] for e in (await alice.request("history", room=DM))["events"]] \
            == ["just us"]
    finally:
        for probe in sse:
            await probe.close()
        for ws in (alice, bob, carol):
            await ws.close()


OpenAt = Callable[[str, str], Awaitable[Page]]


@pytest.fixture
async def chat_process(tmp_path: Path) -> AsyncIterator[ChatProcess]:
    """``python examples/chat/app.py`` on a free port, on this test's SQLite file."""
    process = ChatProcess("chat", dict(os.environ), tmp_path / "chat.log")
    await process.start()
    yield process
    process.stop()


@pytest.fixture
async def open_at(browser: Browser) -> AsyncIterator[OpenAt]:  # noqa: F811
    """``page = await open_at(url, "alice")``: a fresh browser context signed in."""
    contexts: list[Any] = []
    errors: list[str] = []

    async def open_(url: str, name: str) -> Page:
        context = await browser.new_context(viewport={"width": 1100, "height": 640})
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{name}: {exc}"))
        await page.goto(url + "/")
        await sign_in(page, name)
        return page

    yield open_
    for context in contexts:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def test_a_conversation_survives_a_server_restart(chat_process, open_at) -> None:
    url = chat_process.url
    alice = await open_at(url, "alice")
    bob = await open_at(url, "bob")
    await message_user(alice, "bob")
    await send(alice, "before the restart")
    await expect(dm_entry(bob).locator(".badge")).to_have_text("1")

    chat_process.stop()  # the process ends: nothing is left in memory
    for page in (alice, bob):
        await expect(page.locator("#connection-banner")).to_have_text("Reconnecting…")
    await chat_process.start()  # a new process, the same port and database file
    for page in (alice, bob):
        await expect(page.locator("#connection-banner")).to_be_hidden(timeout=10000)
    await send(alice, "after the restart")  # alice's page rejoined the conversation
    await expect(dm_entry(bob).locator(".badge")).to_have_text("2")

    # a new browser for bob: the conversation, its badge and its history come from the server
    fresh = await open_at(url, "bob")
    await expect(dm_entry(fresh).locator(".badge")).to_have_text("2")
    await dm_entry(fresh).locator(".room-link").click()
    await expect(texts(fresh)).to_have_text(["before the restart", "after the restart"])
    await expect(dm_entry(fresh).locator(".badge")).to_have_count(0)
    await expect(dm_entry(bob).locator(".badge")).to_have_count(0)  # read in another tab
    await send(fresh, "got both")
    await expect(texts(alice)).to_have_text(["before the restart", "after the restart", "got both"])
