"""The chat demo on a phone and on a desktop, and what a new user found, in headless Chromium:
the layout at 390 px and 1280 px, feedback when sending while disconnected, a deleted-room
notice that stays until dismissed, and presence in runtime rooms from presence frames."""

from __future__ import annotations

from typing import Any

import pytest
from test_chat_browser import (  # noqa: F401  (browser, chat and open_page are shared fixtures)
    IN_CI,
    MISSING,
    browser,
    chat,
    open_page,
    send,
    texts,
)

if MISSING and not IN_CI:
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)
from playwright.async_api import Page, expect

pytestmark = pytest.mark.timeout(30)


async def open_sized(browser: Any, chat: Any, name: str, width: int, height: int) -> Page:  # noqa: F811
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    await page.goto(f"{chat[1].http_url}/?name={name}")
    await expect(page.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")
    return page


async def box(page: Page, selector: str) -> dict[str, float]:
    found = await page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not rendered"
    return found


async def no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
    assert max(widths[:2]) <= widths[2], widths


async def test_a_phone_gets_the_messages_full_width_and_drawers(browser, chat) -> None:  # noqa: F811
    page = await open_sized(browser, chat, "alice", 390, 844)
    await send(page, "hello from a phone " + "and a long line " * 8)
    await expect(texts(page)).to_have_count(1)
    messages, composer = await box(page, "#messages"), await box(page, "#message-input")
    assert messages["width"] >= 0.9 * 390
    assert composer["width"] >= 0.6 * 390  # the input is not squeezed by the Send button
    send_button = await box(page, "#send-button")
    assert send_button["y"] + send_button["height"] <= 844
    assert send_button["y"] + send_button["height"] >= 844 - 40  # the input sits at the bottom
    assert (await box(page, "#messages .message"))["x"] + (await box(page, "#messages .message"))[
        "width"] <= 390
    await no_horizontal_scroll(page)

    # the room list is a drawer: closed, opened with ☰, closed again by picking a room
    await expect(page.locator("#room-list")).to_be_hidden()
    await expect(page.locator("#presence-list")).to_be_hidden()
    await page.click("#rooms-toggle")
    await expect(page.locator("#room-list")).to_be_visible()
    await no_horizontal_scroll(page)
    await page.locator('#room-list [data-room-id="random"] .room-link').click()
    await expect(page.locator("#room-title")).to_have_text("Random")
    await expect(page.locator("#room-list")).to_be_hidden()
    await page.click("#people-toggle")
    await expect(page.locator('#presence-list [data-user-id="alice"]')).to_be_visible()
    await page.click("#drawer-backdrop", position={"x": 20, "y": 400})
    await expect(page.locator("#presence-list")).to_be_hidden()
    await no_horizontal_scroll(page)


async def test_a_desktop_shows_the_three_panels(browser, chat) -> None:  # noqa: F811
    page = await open_sized(browser, chat, "alice", 1280, 800)
    for selector in ("#room-list", "#presence-list", "#messages", "#message-input"):
        await expect(page.locator(selector)).to_be_visible()
    await expect(page.locator("#rooms-toggle")).to_be_hidden()
    messages = await box(page, "#messages")
    assert messages["width"] >= 0.6 * 1280
    send_button = await box(page, "#send-button")
    assert 800 - 60 <= send_button["y"] + send_button["height"] <= 800
    await no_horizontal_scroll(page)


async def test_sending_while_disconnected_says_so_and_keeps_the_text(chat, open_page) -> None:  # noqa: F811
    server = chat[1]
    alice = await open_page("alice")
    await server.stop()
    await expect(alice.locator("#connection-banner")).to_have_text("Reconnecting…")
    await send(alice, "are you there?")
    error = alice.locator("#error")
    await expect(error).to_have_attribute("data-code", "OFFLINE", timeout=1000)  # at once
    await expect(error).to_contain_text("Not sent")
    await expect(alice.locator("#retry-send")).to_be_visible()
    await expect(alice.locator("#message-input")).to_have_value("are you there?")
    await expect(texts(alice)).to_have_count(0)

    await server.start()
    await expect(alice.locator("#connection-banner")).to_be_hidden(timeout=8000)
    await expect(error).to_contain_text("Connected again")
    await alice.click("#retry-send")
    await expect(texts(alice)).to_have_text(["are you there?"])
    await expect(error).to_be_hidden()
    await expect(alice.locator("#message-input")).to_have_value("")


async def test_a_deleted_room_notice_stays_until_dismissed(open_page) -> None:  # noqa: F811
    alice = await open_page("alice")
    bob = await open_page("bob")
    await alice.fill("#new-room-name", "Book club")
    await alice.click("#create-room-button")
    await bob.locator('#room-list [data-room-id="book-club"] .room-link').click()
    await expect(bob.locator("#room-title")).to_have_text("Book club")

    await alice.locator('#room-list [data-room-id="book-club"] .delete-room').click()
    notice = bob.locator("#room-notice")
    await expect(bob.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")
    await expect(notice).to_contain_text("“Book club” was deleted. You were moved to Lobby.")
    # still there after the lobby was joined and a message arrived in it
    await expect(alice.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")
    await send(alice, "sorry, wrong room")  # alice is back in the lobby too (joined: .active)
    await expect(texts(bob)).to_have_text(["sorry, wrong room"])
    await expect(notice).to_be_visible()
    await bob.click("#room-notice-close")
    await expect(notice).to_be_hidden()


async def test_a_join_in_a_runtime_room_shows_at_once(open_page) -> None:  # noqa: F811
    alice = await open_page("alice")
    bob = await open_page("bob")
    await alice.fill("#new-room-name", "Standup")
    await alice.click("#create-room-button")
    await expect(alice.locator("#room-title")).to_have_text("Standup")
    await expect(alice.locator("#presence-list .presence-user .name")).to_have_text(["alice"])
    await bob.locator('#room-list [data-room-id="standup"] .room-link').click()
    # a presence_join frame, not a poll (that came every 15 s): well within 3 s
    await expect(alice.locator("#presence-list .presence-user .name")).to_have_text(
        ["alice", "bob"], timeout=3000)
    await bob.locator('#room-list [data-room-id="lobby"] .room-link').click()
    await expect(alice.locator("#presence-list .presence-user .name")).to_have_text(
        ["alice"], timeout=3000)
