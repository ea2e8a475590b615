"""Web Push in the chat demo, in headless Chromium, against a local Web Push service.

Headless Chromium cannot reach a real push service, so the test stands in for it at the
two ends it cannot reach, and runs everything between for real:

- ``PushManager.prototype.subscribe`` is replaced in the page (an init script) by one
  that records the ``applicationServerKey`` it was given and returns a subscription whose
  endpoint is the fake Web Push service on 127.0.0.1 (tests/push/fakes/webpush.py) and
  whose keys are a real P-256 key and auth secret the fake holds the private half of;
- the page registers the service worker, subscribes with the key from
  ``GET /push/vapid-public-key`` and posts the subscription (``client.registerPush``); the
  server's ``GET /push/subscriptions`` must list it;
- a direct message to the user, while the conversation is open in no tab, makes the
  server send a VAPID-signed, encrypted push to that endpoint; the fake checks and
  decrypts it;
- that decrypted payload is delivered to the service worker through the DevTools
  protocol (``ServiceWorker.deliverPushMessage``), and the worker must show it
  (``registration.getNotifications()``).

Not covered: the leg from a real push service to the browser, and a click on the
notification (no protocol command clicks one).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest
from test_chat_browser import (  # noqa: F401  (browser is a shared fixture)
    IN_CI,
    MISSING,
    browser,
    load_chat_app,
    send,
)

from dialogue_fastapi.testing import LiveServer

if MISSING and not IN_CI:
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)
from playwright.async_api import Browser, Page, expect

sys.path.insert(0, str(Path(__file__).parents[1] / "push"))  # the fakes of tests/push
from fakes.webpush import FakeWebPush, Subscription

from dialogue_fastapi.push.vapid import generate_vapid_key, vapid_public_key

pytestmark = pytest.mark.timeout(40)
VAPID = generate_vapid_key()

STUB = """(fake) => {
  let current = null;
  const make = () => ({
    endpoint: fake.endpoint, expirationTime: null, options: { userVisibleOnly: true },
    toJSON() { return { endpoint: fake.endpoint, expirationTime: null, keys: fake.keys }; },
    getKey() { return null; },
    async unsubscribe() { current = null; return true; },
  });
  PushManager.prototype.subscribe = async function (options) {
    window.subscribedWith = {
      userVisibleOnly: options.userVisibleOnly,
      key: Array.from(new Uint8Array(options.applicationServerKey)),
    };
    current = make();
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
}"""


@pytest.fixture
async def push_chat(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[ModuleType, LiveServer]]:
    """The chat app with Web Push on, allowed to send to a push service on 127.0.0.1."""
    monkeypatch.setenv("CHAT_VAPID_PRIVATE_KEY", VAPID)
    monkeypatch.setenv("CHAT_VAPID_SUBJECT", "mailto:chat-tests@example.com")
    monkeypatch.setenv("CHAT_PUSH_LOCAL_ENDPOINTS", "1")
    module = load_chat_app()
    server = LiveServer(module.app, "127.0.0.1", 0)
    await server.start()
    yield module, server
    await server.stop()


async def open_user(browser: Browser, server: LiveServer, name: str,  # noqa: F811
                    sub: Subscription | None = None) -> Page:
    context = await browser.new_context(viewport={"width": 1100, "height": 700})
    if sub is not None:
        await context.grant_permissions(["notifications"], origin=server.http_url)
        device = sub.device()
        fake = {"endpoint": sub.endpoint, "keys": device.keys}
        await context.add_init_script(f"({STUB})({orjson.dumps(fake).decode()})")
    page = await context.new_page()
    await page.goto(f"{server.http_url}/?name={name}")
    await expect(page.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")
    return page


def key_bytes(public_key: str) -> list[int]:
    import base64

    return list(base64.urlsafe_b64decode(public_key + "=" * (-len(public_key) % 4)))


async def test_notify_me_registers_and_the_service_worker_shows_the_push(
    browser: Browser, push_chat: Any, webpush_service: FakeWebPush,  # noqa: F811
) -> None:
    server = push_chat[1]
    sub = webpush_service.subscribe()
    bob = await open_user(browser, server, "bob", sub)
    alice = await open_user(browser, server, "alice")
    try:
        button = bob.locator("#notify-button")
        await expect(button).to_have_text("Notify me")
        await button.click()
        await expect(button).to_have_attribute("data-state", "on")
        assert await bob.evaluate("window.subscribedWith") == {
            "userVisibleOnly": True, "key": key_bytes(vapid_public_key(VAPID))}
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            listed = (await http.get("/dialogue/push/subscriptions",
                                     headers={"Authorization": "Bearer bob"})).json()
        assert [(r["kind"], r["target"]) for r in listed["subscriptions"]] == [
            ("webpush", sub.endpoint)]
        registration = await bob.evaluate("""async () => {
            const r = await navigator.serviceWorker.ready;
            return [r.scope, r.active && r.active.scriptURL];
        }""")
        assert registration == [server.http_url + "/", server.http_url + "/sw.js"]

        # alice writes to bob, who is in the lobby: the conversation is open in no tab of his
        await alice.locator('#presence-list [data-user-id="bob"] button.name').click()
        await expect(alice.locator("#room-title")).to_have_text("bob")
        await send(alice, "lunch at one?")
        await expect(bob.locator('#dm-list [data-room-id="dm:alice:bob"] .badge')).to_have_text("1")
        async with asyncio.timeout(15):  # after the server's grace period (3 s)
            while not webpush_service.for_path(sub):
                await asyncio.sleep(0.05)
        payload = webpush_service.for_path(sub)[0].payload
        assert payload["title"] == "alice" and payload["body"] == "lunch at one?"
        assert payload["url"] == "/?room=dm:alice:bob" and payload["tag"] == "dm:alice:bob"

        # the push service's last leg, by the DevTools protocol: to bob's service worker
        cdp = await bob.context.new_cdp_session(bob)
        found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def registrations(params: dict[str, Any]) -> None:
            for reg in params["registrations"]:
                if reg["scopeURL"] == server.http_url + "/" and not reg["isDeleted"] \
                        and not found.done():
                    found.set_result(reg["registrationId"])

        cdp.on("ServiceWorker.workerRegistrationUpdated", registrations)
        await cdp.send("ServiceWorker.enable")
        registration_id = await asyncio.wait_for(found, 10)
        await cdp.send("ServiceWorker.deliverPushMessage", {
            "origin": server.http_url, "registrationId": registration_id,
            "data": orjson.dumps(payload).decode()})
        shown = await bob.wait_for_function("""async () => {
            const r = await navigator.serviceWorker.ready;
            const list = await r.getNotifications();
            return list.length ? list.map((n) => [n.title, n.body, n.tag, n.data.url]) : null;
        }""")
        assert await shown.json_value() == [
            ["alice", "lunch at one?", "dm:alice:bob", "/?room=dm:alice:bob"]]

        # switched off: the registration is gone from the server
        await button.click()
        await expect(button).to_have_attribute("data-state", "off")
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            listed = (await http.get("/dialogue/push/subscriptions",
                                     headers={"Authorization": "Bearer bob"})).json()
        assert listed == {"subscriptions": []}
    finally:
        for page in (bob, alice):
            await page.context.close()


async def test_without_push_there_is_no_button(browser: Browser, monkeypatch) -> None:  # noqa: F811
    for name in ("CHAT_VAPID_PRIVATE_KEY", "CHAT_PUSH"):
        monkeypatch.delenv(name, raising=False)
    module = load_chat_app()
    assert module.PUSH is None
    server = LiveServer(module.app, "127.0.0.1", 0)
    await server.start()
    try:
        page = await open_user(browser, server, "alice")
        await send(page, "no push here")  # the page is up and the push probe has answered
        await expect(page.locator("#messages .message .text")).to_have_text(["no push here"])
        await page.wait_for_function("""async () => {
            const r = await fetch('/dialogue/push/vapid-public-key',
                                  {headers: {Authorization: 'Bearer alice'}});
            return r.status === 404;
        }""")
        await expect(page.locator("#notify-button")).to_be_hidden()
        assert await page.evaluate("navigator.serviceWorker.getRegistrations().then(r => r.length)") == 0
        await page.context.close()
    finally:
        await server.stop()
