"""WebPushSender against a local Web Push service that verifies VAPID and decrypts the payload."""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from fakes.clock import Clock
from fakes.webpush import FakeWebPush, Reply, Subscription

from dialogue_fastapi.push.base import DEFAULT_TTL, Device, Notification, Outcome
from dialogue_fastapi.push.httpclient import SessionHolder, ssl_option
from dialogue_fastapi.push.payload import ELLIPSIS, PAYLOAD_TOO_LARGE, webpush_topic
from dialogue_fastapi.push.vapid import VAPID_REUSE, VapidSigner, load_vapid_key
from dialogue_fastapi.push.webpush import Transport, WebPushSender, generate_vapid_key, vapid_public_key

SUBJECT = "mailto:ops@example.com"


@pytest.fixture
async def sender(webpush_transport: Transport) -> AsyncIterator[WebPushSender]:
    s = WebPushSender(generate_vapid_key(), SUBJECT, transport=webpush_transport)
    assert s.transport == webpush_transport
    yield s
    await s.close()


async def test_delivers_the_encrypted_payload_with_its_headers(
        sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub = webpush_service.subscribe()
    n = Notification("New message", "Ada: hello", url="https://chat.example/r/design",
                     icon="https://chat.example/icon.png", tag="design", data={"room": "design", "seq": 7},
                     ttl=3600, urgency="high")
    result = await sender.send(sub.device(), n)
    assert (result.outcome, result.status) == (Outcome.DELIVERED, 201)
    assert webpush_service.rejected == []
    [got] = webpush_service.received
    assert got.payload == n.payload()
    assert (got.ttl, got.urgency, got.topic) == (3600, "high", "design")
    assert got.claims["aud"] == webpush_service.origin
    assert got.claims["sub"] == SUBJECT
    assert time.time() + 11 * 3600 < got.claims["exp"] <= time.time() + 24 * 3600


async def test_defaults_reach_an_offline_device(sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub = webpush_service.subscribe()
    assert (await sender.send(sub.device(), Notification("Hi"))).outcome is Outcome.DELIVERED
    [got] = webpush_service.received
    assert got.ttl == DEFAULT_TTL > 0
    assert (got.urgency, got.topic) == ("normal", None)
    assert got.payload == {"title": "Hi", "body": ""}


async def test_a_tag_outside_the_topic_alphabet_becomes_a_valid_stable_topic(
        sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub = webpush_service.subscribe()
    tags = ["room: Design / thread 42 🚀", "room: Design / thread 42 🚀", "x" * 33, "room:other"]
    for tag in tags:
        result = await sender.send(sub.device(), Notification("t", tag=tag))
        assert result.outcome is Outcome.DELIVERED, result  # the service refuses an invalid Topic
    topics = [r.topic for r in webpush_service.received]
    assert all(t is not None and len(t) == 32 for t in topics)
    assert topics[0] == topics[1] == webpush_topic(tags[0])
    assert len(set(topics)) == 3
    assert [r.payload["tag"] for r in webpush_service.received] == tags  # the payload keeps the tag


@pytest.mark.parametrize(("replies", "outcomes"), [
    ([Reply(410)], [(Outcome.GONE, 410, None)]),
    ([Reply(404)], [(Outcome.GONE, 404, None)]),
    ([Reply(202)], [(Outcome.DELIVERED, 202, None)]),
    ([Reply(429, {"Retry-After": "7"})], [(Outcome.RETRY, 429, 7.0), (Outcome.DELIVERED, 201, None)]),
    ([Reply(503, {"Retry-After": "120"})], [(Outcome.RETRY, 503, 120.0), (Outcome.DELIVERED, 201, None)]),
    ([Reply(400, body="bad")], [(Outcome.FAILED, 400, None)]),
    ([Reply(401)], [(Outcome.FAILED, 401, None)]),
    ([Reply(403)], [(Outcome.FAILED, 403, None)]),
    ([Reply(413)], [(Outcome.FAILED, 413, None)]),
])
async def test_answers_are_classified(
        sender: WebPushSender, webpush_service: FakeWebPush, replies: list[Reply],
        outcomes: list[tuple[Outcome, int, float | None]]) -> None:
    sub = webpush_service.subscribe()
    webpush_service.script(sub, *replies)
    for expected in outcomes:
        result = await sender.send(sub.device(), Notification("x"))
        assert (result.outcome, result.status, result.retry_after) == expected, result
    assert len(webpush_service.for_path(sub)) == len(outcomes)
    assert webpush_service.rejected == []


async def test_500_every_time_is_retry_every_time(
        sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub = webpush_service.subscribe()
    webpush_service.script(sub, always=Reply(500, body="oops"))
    results = [await sender.send(sub.device(), Notification("x")) for _ in range(3)]
    assert [(r.outcome, r.status, r.reason) for r in results] == [(Outcome.RETRY, 500, "oops")] * 3


async def test_retry_after_as_an_http_date(sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub = webpush_service.subscribe()
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 90))
    webpush_service.script(sub, Reply(429, {"Retry-After": when}))
    result = await sender.send(sub.device(), Notification("x"))
    assert result.outcome is Outcome.RETRY
    assert result.retry_after is not None and 80 <= result.retry_after <= 91


async def test_a_redirect_is_not_followed(sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub, elsewhere = webpush_service.subscribe(), webpush_service.subscribe()
    webpush_service.script(sub, Reply(307, {"Location": elsewhere.endpoint}))
    result = await sender.send(sub.device(), Notification("x"))
    assert (result.outcome, result.status) == (Outcome.FAILED, 307)
    assert webpush_service.for_path(elsewhere) == []


async def test_no_answer_is_retry(sender: WebPushSender) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    device = Subscription(f"http://127.0.0.1:{port}/push/x", "/push/x", load_vapid_key(generate_vapid_key()),
                          b"0123456789abcdef").device()
    result = await sender.send(device, Notification("x"))
    assert (result.outcome, result.status) == (Outcome.RETRY, None)
    assert "ConnectError" in result.reason or "ClientConnectorError" in result.reason  # httpx, aiohttp


async def test_a_service_that_never_answers_is_retry_after_the_timeout(
        webpush_service: FakeWebPush, webpush_transport: Transport) -> None:
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sub = webpush_service.subscribe()
    device = Device("d", "u", "webpush", f"http://127.0.0.1:{port}/push/x", sub.device().keys)
    sender = WebPushSender(generate_vapid_key(), SUBJECT, timeout=0.3, transport=webpush_transport)
    try:
        result = await asyncio.wait_for(sender.send(device, Notification("x")), 5)
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    assert accepted.is_set()
    assert (result.outcome, result.status) == (Outcome.RETRY, None)
    assert "Timeout" in result.reason


async def test_two_push_services_each_get_their_own_audience(sender: WebPushSender) -> None:
    services = [FakeWebPush(), FakeWebPush()]
    for service in services:
        await service.start()
    try:
        subs = [service.subscribe() for service in services]
        for sub in [subs[0], subs[1], subs[0]]:  # one after another, then all at once
            assert (await sender.send(sub.device(), Notification("x"))).outcome is Outcome.DELIVERED
        results = await asyncio.gather(*(sender.send(s.device(), Notification("y")) for s in subs * 5))
        assert {r.outcome for r in results} == {Outcome.DELIVERED}
        for service in services:
            assert service.rejected == []
            assert {r.claims["aud"] for r in service.received} == {service.origin}
        assert services[0].origin != services[1].origin
    finally:
        for service in services:
            await service.stop()


async def test_the_vapid_header_is_reused_per_push_service_for_minutes_only(
        webpush_service: FakeWebPush, clock: Clock, webpush_transport: Transport) -> None:
    sender = WebPushSender(generate_vapid_key(), SUBJECT, clock=clock, transport=webpush_transport)
    sub = webpush_service.subscribe()
    try:
        for step in (0, 60, VAPID_REUSE - 61, 2, 30):
            clock.advance(step)
            assert (await sender.send(sub.device(), Notification("x"))).outcome is Outcome.DELIVERED
    finally:
        await sender.close()
    assert webpush_service.rejected == []
    exps = [r.claims["exp"] for r in webpush_service.received]
    # signed at 0, reused until VAPID_REUSE seconds later, then signed afresh and reused again
    assert exps[0] == exps[1] == exps[2] < exps[3] == exps[4]
    assert exps[3] - exps[0] >= VAPID_REUSE


def test_every_vapid_token_is_signed_from_a_fresh_claims_dict() -> None:
    """py_vapid must never see a dict another audience used (pywebpush's webpush() mutates it)."""
    seen: list[dict[str, object]] = []
    signer = VapidSigner(generate_vapid_key(), SUBJECT, reuse=0)
    real_sign = signer._vapid.sign

    def spy(claims: dict[str, object]) -> dict[str, str]:
        seen.append(claims)
        result: dict[str, str] = real_sign(claims)
        claims["aud"] = "https://mutated.example"  # what a mutating caller would leave behind
        return result

    signer._vapid.sign = spy
    first = signer.authorization("https://a.example")
    second = signer.authorization("https://b.example")
    assert first != second and len(seen) == 2 and seen[0] is not seen[1]
    assert [c["sub"] for c in seen] == [SUBJECT, SUBJECT]
    assert first.startswith("vapid t=") and ",k=" + signer.public_key in first
    with pytest.raises(ValueError, match="vapid"):
        signer.authorization("https://[::1]")  # py_vapid's audience check


async def test_an_oversized_body_is_trimmed_with_an_ellipsis(
        sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub = webpush_service.subscribe()
    body = "Grüße aus München 🚀 " * 400
    n = Notification("Long", body, data={"room": "design"})
    assert (await sender.send(sub.device(), n)).outcome is Outcome.DELIVERED
    [got] = webpush_service.received
    assert got.size <= 3070
    assert got.size > 3070 - 20  # as much of the body as fits
    sent = got.payload["body"]
    assert sent.endswith(ELLIPSIS) and body.startswith(sent.removesuffix(ELLIPSIS))
    assert got.payload["data"] == {"room": "design"}


async def test_data_is_dropped_when_trimming_the_body_is_not_enough(
        sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub = webpush_service.subscribe()
    n = Notification("Big data", "short body", data={"blob": "x" * 4000})
    assert (await sender.send(sub.device(), n)).outcome is Outcome.DELIVERED
    [got] = webpush_service.received
    assert got.payload == {"title": "Big data", "body": "short body"}


async def test_a_payload_that_cannot_fit_is_refused(
        sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    sub = webpush_service.subscribe()
    result = await sender.send(sub.device(), Notification("t" * 3100, "body"))
    assert (result.outcome, result.reason) == (Outcome.FAILED, PAYLOAD_TOO_LARGE)
    assert webpush_service.received == []


async def test_the_largest_payload_fills_one_4096_byte_record(
        webpush_service: FakeWebPush, webpush_transport: Transport) -> None:
    sub = webpush_service.subscribe()
    n = Notification("t", "")
    n = Notification("t", "b" * (3993 - len(orjson.dumps(n.payload()))))
    assert len(orjson.dumps(n.payload())) == 3993
    sender = WebPushSender(generate_vapid_key(), SUBJECT, max_payload=3993, transport=webpush_transport)
    try:
        assert (await sender.send(sub.device(), n)).outcome is Outcome.DELIVERED  # the service checks 4,096
    finally:
        await sender.close()
    assert webpush_service.received[0].payload == n.payload()
    with pytest.raises(ValueError, match="max_payload"):
        WebPushSender(generate_vapid_key(), SUBJECT, max_payload=3994)


async def test_a_subscription_with_broken_keys_is_gone(
        sender: WebPushSender, webpush_service: FakeWebPush) -> None:
    good = webpush_service.subscribe().device()
    for keys in ({}, {**good.keys, "auth": "c2hvcnQ"}, {**good.keys, "p256dh": "AAAA"}):
        device = Device("d", "u", "webpush", good.target, keys)
        result = await sender.send(device, Notification("x"))
        assert (result.outcome, result.status) == (Outcome.GONE, None)
    bad_url = Device("d", "u", "webpush", "ftp://example.com/x", good.keys)
    assert (await sender.send(bad_url, Notification("x"))).outcome is Outcome.FAILED
    assert webpush_service.received == [] and webpush_service.rejected == []


def test_vapid_keys_in_every_accepted_form_give_the_same_public_key(tmp_path: Path) -> None:
    pem = generate_vapid_key()
    key = load_vapid_key(pem)
    raw = base64.urlsafe_b64encode(key.private_numbers().private_value.to_bytes(32, "big")).rstrip(b"=")
    der = base64.urlsafe_b64encode(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    sec1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()
    path = tmp_path / "vapid.pem"
    path.write_text(pem)
    public = vapid_public_key(pem)
    point = base64.urlsafe_b64decode(public + "=")
    assert len(public) == 87 and len(point) == 65 and point[0] == 4
    for form in (raw.decode(), der.decode(), sec1, str(path), path, key):
        assert vapid_public_key(form) == public
    assert WebPushSender(raw.decode(), SUBJECT).public_key == public
    for bad in ("not a key", "AAAA", generate_vapid_key().replace("A", "B", 5)):
        with pytest.raises(ValueError):
            vapid_public_key(bad)
    with pytest.raises(ValueError, match="vapid_subject"):
        WebPushSender(pem, "ops@example.com")


def test_the_command_line_generates_a_key_and_prints_its_public_key(tmp_path: Path) -> None:
    generated = subprocess.run([sys.executable, "-m", "dialogue_fastapi.push.vapid", "--generate"],
                               capture_output=True, text=True, timeout=30, check=True)
    assert generated.stdout.startswith("-----BEGIN PRIVATE KEY-----")
    public = generated.stderr.strip().removeprefix("application server key: ")
    path = tmp_path / "vapid.pem"
    path.write_text(generated.stdout)
    again = subprocess.run([sys.executable, "-m", "dialogue_fastapi.push.vapid", "--public-key", str(path)],
                           capture_output=True, text=True, timeout=30, check=True)
    assert again.stdout.strip() == public == vapid_public_key(path)


async def test_close_is_idempotent_and_a_closed_sender_sends_again(
        webpush_service: FakeWebPush, webpush_transport: Transport) -> None:
    sender = WebPushSender(generate_vapid_key(), SUBJECT, transport=webpush_transport)
    sub = webpush_service.subscribe()
    await sender.close()  # never used
    assert (await sender.send(sub.device(), Notification("x"))).outcome is Outcome.DELIVERED
    await sender.close()
    await sender.close()
    assert (await sender.send(sub.device(), Notification("x"))).outcome is Outcome.DELIVERED
    await sender.close()


def test_aiohttp_is_the_default_transport_and_an_unknown_one_is_refused() -> None:
    assert WebPushSender(generate_vapid_key(), SUBJECT).transport == "aiohttp"
    with pytest.raises(ValueError, match="transport"):
        WebPushSender(generate_vapid_key(), SUBJECT, transport="requests")  # type: ignore[arg-type]


def test_verify_becomes_aiohttps_ssl_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    import certifi

    assert ssl_option(False) is False
    context = ssl.create_default_context()
    assert ssl_option(context) is context
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    for verify in (True, certifi.where(), str(Path(certifi.where()).parent)):
        made = ssl_option(verify)
        assert isinstance(made, ssl.SSLContext)
        assert made.verify_mode is ssl.CERT_REQUIRED and made.check_hostname
    assert ssl_option(True).cert_store_stats()["x509_ca"] > 0  # type: ignore[union-attr]
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        ssl_option(True)  # SSL_CERT_FILE is honoured, as httpx honours it


async def test_the_aiohttp_session_reads_proxies_from_the_environment_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "push.internal")
    holder = SessionHolder(timeout=1.0, verify=True, max_connections=2)
    try:
        holder.get()
        monkeypatch.delenv("HTTPS_PROXY")  # read when the session was made, not per request
        chosen = holder.proxy("https://fcm.example/wp/abc")
        assert str(chosen["proxy"]) == "http://proxy.internal:3128"
        assert chosen["proxy_auth"].login == "user" and chosen["proxy_auth"].password == "secret"
        assert holder.proxy("https://push.internal/x") == {}  # NO_PROXY
        assert holder.proxy("http://plain.example/x") == {}  # no proxy for http
    finally:
        await holder.close()
