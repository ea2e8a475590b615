"""The Python client's push registration helpers against a real server (REST with the
client's credentials), and a registration made through them reaching a local Web Push
service that decrypts what the server sent."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RoomConfig
from dialogue_fastapi.client import DialogueClient, DialogueClientError
from dialogue_fastapi.client.rest import rest_base
from dialogue_fastapi.core.push_config import PushConfig
from dialogue_fastapi.push.vapid import generate_vapid_key, vapid_public_key

sys.path.insert(0, str(Path(__file__).parent / "push"))  # tests/push/fakes, shared with its tests
from fakes.webpush import FakeWebPush, Subscription

pytestmark = pytest.mark.timeout(20)
VAPID = generate_vapid_key()


def authenticate(conn: HTTPConnection) -> Identity | None:
    header = conn.headers.get("authorization", "")
    return Identity(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None


def make(push: bool = True) -> Dialogue:
    return Dialogue(
        rooms={"design": RoomConfig(name="Design", channels=["websocket", "webpush"])},
        authenticate=authenticate,
        push=PushConfig(vapid_private_key=VAPID, vapid_subject="mailto:ops@example.com",
                        grace_period=0, allow_http_endpoints=True,
                        allow_private_endpoints=True) if push else None,
    )


@pytest.fixture
def server(serve: Any) -> Any:
    """The app with the router under /dialogue, as in the examples."""
    return lambda dialogue: serve(dialogue, prefix="/dialogue")


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Poll ``condition()`` until it is true (the fake service has no event to await)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def keys(sub: Subscription) -> dict[str, str]:
    device = sub.device()
    return {"p256dh": device.keys["p256dh"], "auth": device.keys["auth"]}


def test_the_rest_base_is_beside_the_websocket_endpoint() -> None:
    assert rest_base("ws://h:1/dialogue/ws") == "http://h:1/dialogue"
    assert rest_base("wss://h/api/chat/ws/?x=1") == "https://h/api/chat"
    assert rest_base("ws://h/ws") == "http://h"


async def test_register_list_and_unregister_with_the_clients_credentials(
    server: Any, webpush_service: FakeWebPush
) -> None:
    srv = await server(make())
    url = srv.ws_url("/dialogue/ws")
    sub = webpush_service.subscribe()
    async with DialogueClient(url, token="alice") as alice, DialogueClient(url, token="bob") as bob:
        assert await alice.vapid_public_key() == vapid_public_key(VAPID)
        reg_id = await alice.register_push("webpush", endpoint=sub.endpoint, keys=keys(sub),
                                           rooms=["design"])
        again = await alice.register_push("webpush", endpoint=sub.endpoint, keys=keys(sub))
        assert again == reg_id  # the same endpoint: updated, not added
        listed = await alice.push_registrations()
        assert [(r["id"], r["kind"], r["target"], r["rooms"]) for r in listed] == [
            (reg_id, "webpush", sub.endpoint, [])]
        assert await bob.push_registrations() == []  # only one's own

        with pytest.raises(DialogueClientError) as refused:
            await bob.unregister_push(reg_id)
        assert refused.value.code == "NOT_FOUND"
        with pytest.raises(DialogueClientError) as invalid:
            await alice.register_push("webpush", endpoint="ftp://x/y", keys=keys(sub))
        assert invalid.value.code in ("VALIDATION_FAILED", "BAD_REQUEST")
        await alice.unregister_push(reg_id)
        assert await alice.push_registrations() == []


async def test_refusals_are_client_errors(server: Any) -> None:
    srv = await server(make(push=False))
    async with DialogueClient(srv.ws_url("/dialogue/ws"), token="alice") as alice:
        with pytest.raises(DialogueClientError) as off:  # no push= on the server: no routes
            await alice.register_push("fcm", token="t" * 150)
        assert off.value.code == "NOT_FOUND"
        with pytest.raises(DialogueClientError) as missing:
            await alice.register_push("webpush", endpoint="https://push.example.net/x")
        assert missing.value.code == "BAD_REQUEST"
    srv = await server(make())
    client = DialogueClient(srv.ws_url("/dialogue/ws"), token="alice",
                            http_url=srv.http_url + "/nowhere")
    async with client:
        with pytest.raises(DialogueClientError) as wrong:
            await client.push_registrations()
        assert wrong.value.code == "NOT_FOUND"


async def test_a_device_registered_by_the_client_is_notified_while_offline(
    server: Any, webpush_service: FakeWebPush
) -> None:
    srv = await server(make())
    url = srv.ws_url("/dialogue/ws")
    sub = webpush_service.subscribe()
    async with DialogueClient(url, token="alice") as alice:
        await alice.register_push("webpush", endpoint=sub.endpoint, keys=keys(sub),
                                  rooms=["design"])
    # alice is offline; bob writes in a room her device asked for
    async with DialogueClient(url, token="bob") as bob:
        room = await bob.join("design")
        await room.publish("message", {"text": "the mockups are in"})
        await until(lambda: webpush_service.for_path(sub))
    received = webpush_service.for_path(sub)
    assert received[0].payload["title"] == "Design"
    assert received[0].payload["body"] == "bob: the mockups are in"
    assert received[0].payload["tag"] == "design"
