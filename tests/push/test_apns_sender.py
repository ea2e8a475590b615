"""ApnsSender against local HTTP/2 TLS APNs services that check provider tokens and headers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fakes.apns import DROP, GOAWAY, FakeApns, Reply
from fakes.clock import Clock
from fakes.tls import Tls

from dialogue_fastapi.push.apns import ApnsSender
from dialogue_fastapi.push.base import Device, Notification, Outcome
from dialogue_fastapi.push.payload import ELLIPSIS, PAYLOAD_TOO_LARGE

TEAM, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.example.chat"
TOKEN = "a1" * 32
MINUTE = 60


@dataclass
class Apple:
    production: FakeApns
    sandbox: FakeApns
    key_pem: str


def device(token: str = TOKEN, **keys: object) -> Device:
    return Device("d1", "u1", "apns", token, dict(keys))


@pytest.fixture
async def apple(tls: Tls, clock: Clock) -> AsyncIterator[Apple]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    services = [FakeApns(team_id=TEAM, key_id=KEY_ID, public_key=key.public_key(),
                         topics={TOPIC, "com.example.other"}, clock=clock) for _ in range(2)]
    for service in services:
        await service.start(tls)
    yield Apple(services[0], services[1], pem)
    for service in services:
        await service.stop()


@pytest.fixture
async def sender(apple: Apple, tls: Tls, clock: Clock) -> AsyncIterator[ApnsSender]:
    s = ApnsSender(apple.key_pem, key_id=KEY_ID, team_id=TEAM, topic=TOPIC,
                   production_url=apple.production.url, sandbox_url=apple.sandbox.url,
                   verify=tls.client_context(), clock=clock)
    yield s
    await s.close()


async def test_sends_an_alert_with_apples_headers(sender: ApnsSender, apple: Apple, clock: Clock) -> None:
    n = Notification("New message", "Ada: hello", url="https://chat.example/r/design", tag="design",
                     data={"room": "design", "seq": 7}, ttl=3600)
    result = await sender.send(device(), n)
    assert (result.outcome, result.status) == (Outcome.DELIVERED, 200)
    assert apple.production.refused == [] and apple.sandbox.received == []
    [got] = apple.production.received
    assert got.device_token == TOKEN
    alert = {"title": "New message", "body": "Ada: hello"}
    assert got.payload == {"room": "design", "seq": 7, "url": "https://chat.example/r/design",
                           "aps": {"alert": alert, "thread-id": "design"}}
    h = got.headers
    assert (h["apns-topic"], h["apns-push-type"], h["apns-priority"], h["apns-collapse-id"]) == \
        (TOPIC, "alert", "10", "design")
    assert abs(int(h["apns-expiration"]) - (clock() + 3600)) <= 2


async def test_priority_expiration_and_collapse_id_rules(sender: ApnsSender, apple: Apple) -> None:
    long_tag = "room: Design — thread " + "x" * 80
    await sender.send(device(), Notification("a", urgency="very-low", ttl=0, tag=long_tag))
    await sender.send(device(), Notification("b", urgency="high"))
    first, second = apple.production.received
    assert (first.headers["apns-priority"], first.headers["apns-expiration"]) == ("5", "0")
    assert len(first.headers["apns-collapse-id"]) == 43 and first.payload["aps"]["thread-id"] == long_tag
    assert second.headers["apns-priority"] == "10" and "apns-collapse-id" not in second.headers
    assert [r.status for r in apple.production.received] == [200, 200]


async def test_the_device_chooses_topic_and_sandbox(sender: ApnsSender, apple: Apple) -> None:
    assert (await sender.send(device(sandbox=True), Notification("x"))).outcome is Outcome.DELIVERED
    other = await sender.send(device(topic="com.example.other"), Notification("x"))
    assert other.outcome is Outcome.DELIVERED
    assert [r.headers["apns-topic"] for r in apple.sandbox.received] == [TOPIC]
    assert [r.headers["apns-topic"] for r in apple.production.received] == ["com.example.other"]
    result = await sender.send(device(topic="com.example.unknown"), Notification("x"))
    assert (result.outcome, result.status, result.reason) == (Outcome.FAILED, 400, "TopicDisallowed")


@pytest.mark.parametrize(("reply", "outcome"), [
    (Reply(410, "Unregistered"), Outcome.GONE),
    (Reply(400, "BadDeviceToken"), Outcome.GONE),
    (Reply(400, "DeviceTokenNotForTopic"), Outcome.GONE),
    (Reply(429, "TooManyRequests"), Outcome.RETRY),
    (Reply(500, "InternalServerError"), Outcome.RETRY),
    (Reply(503, "ServiceUnavailable"), Outcome.RETRY),
    (Reply(400, "BadMessageId"), Outcome.FAILED),
    (Reply(403, "Forbidden"), Outcome.FAILED),
    (Reply(413, "PayloadTooLarge"), Outcome.FAILED),
])
async def test_apples_answers_are_classified(sender: ApnsSender, apple: Apple, reply: Reply,
                                             outcome: Outcome) -> None:
    apple.production.script(TOKEN, reply)
    result = await sender.send(device(), Notification("x"))
    assert (result.outcome, result.status, result.reason) == (outcome, reply.status, reply.reason)
    assert len(apple.production.received) == 1


async def test_the_provider_token_is_reused_within_the_window_and_renewed_after(
        sender: ApnsSender, apple: Apple, clock: Clock) -> None:
    start = clock.offset
    for minute in (0, 10, 39, 41, 60, 80, 81, 150):
        clock.offset = start + minute * MINUTE
        assert (await sender.send(device(), Notification("x"))).outcome is Outcome.DELIVERED
    tokens = [r.provider_token for r in apple.production.received]
    a, b, c, d = tokens[0], tokens[3], tokens[6], tokens[7]
    # renewed when 40 minutes old (at 41, 81 and 150), and only then
    assert tokens == [a, a, a, b, b, b, c, d] and len({a, b, c, d}) == 4
    assert apple.production.refused == []  # never too old, never renewed within 20 minutes


async def test_an_expired_provider_token_is_renewed_once_and_the_alert_sent_again(
        sender: ApnsSender, apple: Apple) -> None:
    tokens = [f"{i:02x}" * 32 for i in range(5)]
    for token in tokens:
        apple.production.script(token, Reply(403, "ExpiredProviderToken"))
    results = await asyncio.gather(*(sender.send(device(t), Notification("x")) for t in tokens))
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert len(apple.production.accepted_tokens) == 2  # one renewal for all five
    assert apple.production.refused == []  # so no TooManyProviderTokenUpdates


async def test_a_provider_token_refused_twice_is_failed(sender: ApnsSender, apple: Apple) -> None:
    apple.production.script(TOKEN, Reply(403, "InvalidProviderToken"), Reply(403, "InvalidProviderToken"))
    result = await sender.send(device(), Notification("x"))
    assert (result.outcome, result.status, result.reason) == (Outcome.FAILED, 403, "InvalidProviderToken")
    assert len(apple.production.received) == 2


async def test_after_goaway_the_next_send_uses_a_new_connection(sender: ApnsSender, apple: Apple) -> None:
    apple.production.goaway_after = 2
    results = [await sender.send(device(), Notification(str(i))) for i in range(5)]
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 5
    assert [r.connection for r in apple.production.received] == [1, 1, 2, 2, 3]


async def test_a_stream_refused_by_goaway_is_sent_again_on_a_new_connection(
        sender: ApnsSender, apple: Apple) -> None:
    assert (await sender.send(device(), Notification("warm up"))).outcome is Outcome.DELIVERED
    apple.production.script(TOKEN, GOAWAY)
    result = await sender.send(device(), Notification("x"))
    assert result.outcome is Outcome.DELIVERED
    assert apple.production.connections == 2
    assert [(r.connection, r.status) for r in apple.production.received] == [(1, 200), (1, 0), (2, 200)]


async def test_a_dropped_connection_is_retried_once_then_retry(sender: ApnsSender, apple: Apple) -> None:
    apple.production.script(TOKEN, DROP)
    assert (await sender.send(device(), Notification("x"))).outcome is Outcome.DELIVERED
    assert apple.production.connections == 2
    apple.production.script(TOKEN, DROP, DROP)
    result = await sender.send(device(), Notification("y"))
    assert (result.outcome, result.status) == (Outcome.RETRY, None)
    assert apple.production.connections == 3  # the pooled connection, then one new one
    assert (await sender.send(device(), Notification("z"))).outcome is Outcome.DELIVERED
    assert apple.production.connections == 4


async def test_an_oversized_payload_is_trimmed_or_refused(sender: ApnsSender, apple: Apple) -> None:
    body = "Grüße 🚀 " * 1000
    trimmed = await sender.send(device(), Notification("Long", body, data={"k": "v"}))
    assert trimmed.outcome is Outcome.DELIVERED
    [got] = apple.production.received
    assert 4096 - 20 < got.size <= 4096
    sent = got.payload["aps"]["alert"]["body"]
    assert sent.endswith(ELLIPSIS) and body.startswith(sent.removesuffix(ELLIPSIS))
    assert got.payload["k"] == "v"
    result = await sender.send(device(), Notification("t" * 5000))
    assert (result.outcome, result.reason) == (Outcome.FAILED, PAYLOAD_TOO_LARGE)
    assert len(apple.production.received) == 1
    assert len(orjson.dumps(got.payload)) == got.size


async def test_local_refusals_never_reach_apple(apple: Apple, tls: Tls, clock: Clock) -> None:
    sender = ApnsSender(apple.key_pem, key_id=KEY_ID, team_id=TEAM, production_url=apple.production.url,
                        verify=tls.client_context(), clock=clock)
    try:
        not_hex = await sender.send(device("../../x"), Notification("x"))
        no_topic = await sender.send(device(), Notification("x"))
    finally:
        await sender.close()
    assert (not_hex.outcome, not_hex.reason) == (Outcome.GONE, "BadDeviceToken")
    assert no_topic.outcome is Outcome.FAILED
    assert apple.production.connections == 0
    with pytest.raises(ValueError):
        ApnsSender(apple.key_pem, key_id="", team_id=TEAM)
