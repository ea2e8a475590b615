"""Render the chat demo at phone and desktop widths for the docs.

    python docs/screenshots.py

writes ``docs/images/chat-390.png`` (390 x 844, a phone) and ``docs/images/chat-1280.png``
(1280 x 800). It runs ``examples/chat/app.py`` under uvicorn on a free port with a
throwaway SQLite file, signs in two users in headless Chromium (``/usr/bin/chromium``,
driven by Playwright), has them talk, and takes the pictures. Tests never write these
files; run this script when the page's look changes and commit the images.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
SIZES = {"chat-390.png": (390, 844), "chat-1280.png": (1280, 800)}
LINES = [("alice", "Hi Bob! Did the deploy go out?"),
         ("bob", "Yes, ten minutes ago. Everything is green."),
         ("alice", "Great, thanks! Lunch at one?")]


def load_chat_app(database: Path) -> object:
    os.environ["DIALOGUE_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    spec = importlib.util.spec_from_file_location("chat_example", ROOT / "examples/chat/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def render(out: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for name, size in SIZES.items():
            await shoot(browser, size, out / name)
            print(f"wrote {out / name}")
        await browser.close()


async def shoot(browser: Any, size: tuple[int, int], path: Path) -> None:
    """A fresh server and history for each picture."""
    from playwright.async_api import expect

    from dialogue_fastapi.testing import LiveServer

    with tempfile.TemporaryDirectory() as tmp:
        chat = load_chat_app(Path(tmp) / "chat.db")
        server = LiveServer(chat.app, "127.0.0.1", 0)  # type: ignore[attr-defined]
        await server.start()
        try:
            pages = {}
            for user in ("alice", "bob"):
                context = await browser.new_context(
                    viewport={"width": size[0], "height": size[1]}, device_scale_factor=1)
                page = await context.new_page()
                await page.goto(f"{server.http_url}/?name={user}")
                await expect(page.locator("#room-list .room.active")).to_have_count(1)
                pages[user] = page
            for count, (user, text) in enumerate(LINES, 1):
                await pages[user].fill("#message-input", text)
                await pages[user].press("#message-input", "Enter")
                await expect(pages["alice"].locator("#messages .message")).to_have_count(count)
            await pages["bob"].fill("#message-input", "Sure, see you")
            await expect(pages["alice"].locator("#typing-indicator")).to_have_text("bob is typing…")
            await pages["alice"].screenshot(path=str(path))
            for page in pages.values():
                await page.context.close()
        finally:
            await server.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else IMAGES
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(render(target))
