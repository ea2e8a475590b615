"""FcmSender against a local FCM service and token endpoint that check what Google checks."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fakes.clock import Clock
from fakes.fcm import FakeFcm, service_account
from fastapi import FastAPI

from dialogue_fastapi.push.base import Device, Notification, Outcome, SendResult
from dialogue_fastapi.push.fcm import FcmSender
from dialogue_fastapi.push.fcm_auth import AccessToken
from dialogue_fastapi.testing import live_server

TOKEN = "fcm-registration-token-1"


def device(token: str = TOKEN) -> Device:
    return Device("d1", "u1", "fcm", token)


@pytest.fixture
async def sender(fcm_service: FakeFcm, clock: Clock) -> AsyncIterator[FcmSender]:
    s = FcmSender(fcm_service.account, base_url=fcm_service.base_url, clock=clock)
    yield s
    await s.close()


async def test_sends_a_v1_message_with_a_bearer_token_from_the_service_account(
        sender: FcmSender, fcm_service: FakeFcm) -> None:
    n = Notification("New message", "Ada: hello", url="https://chat.example/r/design", tag="room: design",
                     data={"room": "design", "seq": 7, "meta": {"a": 1}}, ttl=3600, urgency="low")
    result = await sender.send(device(), n)
    assert (result.outcome, result.status) == (Outcome.DELIVERED, 200)
    assert fcm_service.rejected == [] and fcm_service.token_rejections == []
    [claims] = fcm_service.token_requests
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    [(bearer, message)] = fcm_service.messages
    assert bearer == claims["access_token"]
    assert message["token"] == TOKEN
    assert message["notification"] == {"title": "New message", "body": "Ada: hello"}
    assert message["data"] == {"room": "design", "seq": "7", "meta": '{"a":1}',
                               "url": "https://chat.example/r/design"}
    assert message["android"] == {"ttl": "3600s", "priority": "NORMAL", "collapse_key": "room: design",
                                  "notification": {"tag": "room: design"}}
    headers = message["webpush"]["headers"]
    assert headers["TTL"] == "3600" and headers["Urgency"] == "low" and len(headers["Topic"]) == 32
    assert message["webpush"]["fcm_options"] == {"link": "https://chat.example/r/design"}
    assert message["apns"]["headers"]["apns-priority"] == "5"
    assert message["apns"]["headers"]["apns-collapse-id"] == "room: design"


@pytest.mark.parametrize(("error", "retry_after", "expected"), [
    ("UNREGISTERED", None, (Outcome.GONE, 404, "UNREGISTERED", None)),
    ("INVALID_TOKEN", None, (Outcome.GONE, 400, "INVALID_ARGUMENT", None)),
    ("INVALID_ARGUMENT", None,
     (Outcome.FAILED, 400, "INVALID_ARGUMENT: Request contains an invalid argument.", None)),
    ("SENDER_ID_MISMATCH", None, (Outcome.GONE, 403, "SENDER_ID_MISMATCH", None)),
    ("QUOTA_EXCEEDED", "30", (Outcome.RETRY, 429, "QUOTA_EXCEEDED", 30.0)),
    ("UNAVAILABLE", "5", (Outcome.RETRY, 503, "UNAVAILABLE", 5.0)),
    ("INTERNAL", None, (Outcome.RETRY, 500, "INTERNAL", None)),
    ("THIRD_PARTY_AUTH_ERROR", None,
     (Outcome.FAILED, 401, "THIRD_PARTY_AUTH_ERROR: Auth error from APNS or Web Push Service", None)),
])
async def test_fcm_errors_are_classified(sender: FcmSender, fcm_service: FakeFcm, error: str,
                                         retry_after: str | None, expected: tuple[object, ...]) -> None:
    fcm_service.script(TOKEN, error, retry_after=retry_after)
    result = await sender.send(device(), Notification("x"))
    assert (result.outcome, result.status, result.reason, result.retry_after) == expected
    assert len(fcm_service.messages) == 1  # no second attempt, not even for THIRD_PARTY_AUTH_ERROR
    assert len(fcm_service.token_requests) == 1
    assert (await sender.send(device(), Notification("x"))).outcome is Outcome.DELIVERED


async def test_a_401_refreshes_the_token_once_and_sends_again(
        sender: FcmSender, fcm_service: FakeFcm) -> None:
    assert (await sender.send(device(), Notification("one"))).outcome is Outcome.DELIVERED
    fcm_service.revoke_tokens()  # e.g. the key was rotated
    result = await sender.send(device(), Notification("two"))
    assert result.outcome is Outcome.DELIVERED
    first, second = fcm_service.issued()
    assert [bearer for bearer, _ in fcm_service.messages] == [first, second]


async def test_a_second_401_in_one_send_is_failed(sender: FcmSender, fcm_service: FakeFcm) -> None:
    fcm_service.script(TOKEN, "UNAUTHENTICATED", "UNAUTHENTICATED")
    result = await sender.send(device(), Notification("x"))
    assert (result.outcome, result.status) == (Outcome.FAILED, 401)
    assert result.reason.startswith("UNAUTHENTICATED")
    assert len(fcm_service.messages) == 2 and len(fcm_service.token_requests) == 2


async def test_the_token_is_refreshed_before_it_expires(
        sender: FcmSender, fcm_service: FakeFcm, clock: Clock) -> None:
    await sender.send(device(), Notification("x"))
    clock.advance(3000)  # 600 s left of 3600: more than the 300 s margin
    await sender.send(device(), Notification("x"))
    assert len(fcm_service.token_requests) == 1
    clock.advance(400)  # 200 s left
    assert (await sender.send(device(), Notification("x"))).outcome is Outcome.DELIVERED
    first, second = fcm_service.issued()
    assert [bearer for bearer, _ in fcm_service.messages] == [first, first, second]


async def test_concurrent_sends_share_one_refresh(sender: FcmSender, fcm_service: FakeFcm) -> None:
    results = await asyncio.gather(*(sender.send(device(f"t{i}"), Notification("x")) for i in range(20)))
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert len(fcm_service.token_requests) == 1


async def test_credentials_from_a_file_or_firebase_admin(fcm_service: FakeFcm, tmp_path: Path) -> None:
    from firebase_admin import credentials  # type: ignore[import-untyped]

    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(fcm_service.account))
    sources = [str(path), path, credentials.Certificate(fcm_service.account),
               credentials.Certificate(fcm_service.account).get_credential()]
    for source in sources:
        sender = FcmSender(source, base_url=fcm_service.base_url)
        try:
            assert (await sender.send(device(), Notification("x"))).outcome is Outcome.DELIVERED
        finally:
            await sender.close()
    assert fcm_service.token_rejections == [] and len(fcm_service.token_requests) == 4
    # what firebase-admin loads is narrowed to FCM; credentials passed in are used as given
    scopes = [claims["scope"] for claims in fcm_service.token_requests]
    assert scopes[:3] == ["https://www.googleapis.com/auth/firebase.messaging"] * 3
    assert "https://www.googleapis.com/auth/firebase.messaging" not in scopes[3].split()
    with pytest.raises(ValueError, match="service account"):
        FcmSender({"type": "authorized_user"})
    with pytest.raises(TypeError, match="service_account"):
        FcmSender(42)  # type: ignore[arg-type]


async def test_refused_credentials_are_failed_and_an_unreachable_token_endpoint_is_retry(
        fcm_service: FakeFcm) -> None:
    forged, _ = service_account(fcm_service.token_uri)  # another key under the same names
    forged = {**forged, "private_key_id": fcm_service.account["private_key_id"],
              "client_email": fcm_service.account["client_email"]}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/token"
    unreachable = {**fcm_service.account, "token_uri": closed}
    results: list[SendResult] = []
    for account in (forged, unreachable):
        sender = FcmSender(account, base_url=fcm_service.base_url)
        try:
            results.append(await sender.send(device(), Notification("x")))
        finally:
            await sender.close()
    assert [(r.outcome, r.status) for r in results] == [(Outcome.FAILED, None), (Outcome.RETRY, None)]
    assert "invalid_grant" in results[0].reason
    assert len(fcm_service.token_rejections) == 1 and fcm_service.messages == []
    with pytest.raises(ValueError, match="project_id"):
        FcmSender({**fcm_service.account, "project_id": ""})


def health_app(sender: FcmSender, sends: list[asyncio.Task[SendResult]]) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/send", status_code=202)
    async def send() -> dict[str, str]:
        sends.append(asyncio.create_task(sender.send(device(), Notification("x"))))
        return {"status": "queued"}

    return app


class BlockingToken(AccessToken):
    """What firebase-admin does: refresh on the event loop (the negative control)."""

    async def get(self) -> str:
        self.refresh_blocking()
        return str(self._credentials.token)


async def held_token_run(fcm_service: FakeFcm, sender: FcmSender, hold: float) -> tuple[str | None, int]:
    """Send through a real server while the token endpoint is held; answer who released it
    when ``/health`` had answered, and /health's status."""
    sends: list[asyncio.Task[SendResult]] = []
    fcm_service.hold(timeout=hold)
    async with live_server(health_app(sender, sends)) as server, \
            httpx.AsyncClient(base_url=server.http_url, timeout=5) as client:
        assert (await client.post("/send")).status_code == 202
        assert await asyncio.to_thread(fcm_service.token_waiting.wait, 5), "no token request"
        health = await client.get("/health")
        released_before_health = fcm_service.released_by
        fcm_service.release()
        result = await asyncio.wait_for(sends[0], 10)
    assert result.outcome is Outcome.DELIVERED
    return released_before_health, health.status_code


async def test_a_slow_token_endpoint_does_not_block_the_event_loop(fcm_service: FakeFcm) -> None:
    sender = FcmSender(fcm_service.account, base_url=fcm_service.base_url)
    try:
        released, status = await held_token_run(fcm_service, sender, hold=10)
    finally:
        await sender.close()
    assert status == 200
    assert released is None  # /health answered while the token endpoint was still held
    assert fcm_service.released_by == "test"


async def test_the_held_token_test_catches_a_refresh_on_the_event_loop(fcm_service: FakeFcm) -> None:
    sender = FcmSender(fcm_service.account, base_url=fcm_service.base_url)
    sender._token = BlockingToken(sender._token._credentials)
    try:
        released, status = await held_token_run(fcm_service, sender, hold=1)
    finally:
        await sender.close()
    assert status == 200
    assert released == "timeout"  # /health could only answer once the blocking refresh was over
