"""Push registration over REST: validated (the SSRF guard, keys, tokens), deduplicated, the
caller's own only, capped, rate limited, and documented in OpenAPI with a body per kind."""

from __future__ import annotations

import base64
import os
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import (
    ec,
    rsa,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from starlette.requests import HTTPConnection

from dialogue_fastapi import Dialogue, Identity, RateLimit, RoomConfig
from dialogue_fastapi.core.push_config import APNSConfig, FCMConfig, PushConfig
from dialogue_fastapi.push.vapid import generate_vapid_key, vapid_public_key

PUBLIC_HOSTS = {"push.example.net": ["93.184.216.34"], "rebound.example.net": ["10.0.0.7"],
                "updates.push.services.mozilla.com": ["34.117.49.10"]}


def authenticate(conn: HTTPConnection) -> Identity | None:
    header = conn.headers.get("authorization", "")
    return Identity(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def browser_keys() -> dict[str, str]:
    """What a browser's PushSubscription carries: its P-256 public key and a 16-byte secret."""
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    return {"p256dh": b64(point), "auth": b64(os.urandom(16))}


def pem(key: Any) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


#: credentials of the kind each provider hands out (nothing is sent in these tests)
SERVICE_ACCOUNT = {
    "type": "service_account", "project_id": "chat-app", "private_key_id": "k1",
    "private_key": pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "client_email": "push@chat-app.iam.gserviceaccount.com", "client_id": "1",
    "token_uri": "http://127.0.0.1:9/token"}
APNS = APNSConfig(key=pem(ec.generate_private_key(ec.SECP256R1())), key_id="ABC123DEFG",
                  team_id="TEAM123456", topic="com.example.chat")


def make(**push: Any) -> Dialogue:
    push.setdefault("vapid_private_key", VAPID)
    push.setdefault("vapid_subject", "mailto:ops@example.com")
    push.setdefault("fcm", FCMConfig(service_account=SERVICE_ACCOUNT))
    push.setdefault("apns", APNS)
    return Dialogue(
        rooms={"design": RoomConfig(name="Design", channels=["websocket", "webpush"]),
               "secret": RoomConfig(name="Secret", channels=["websocket", "webpush"]),
               "plain": RoomConfig(name="Plain")},
        authenticate=authenticate,
        hooks={"before_join": lambda identity, room: room != "secret" or identity.user_id == "boss"},
        push=PushConfig(**push),
        rate_limit=RateLimit(http={"push": "30/minute"}),
    )


VAPID = generate_vapid_key()


async def fake_dns(host: str) -> list[str]:
    if host not in PUBLIC_HOSTS:
        raise OSError("no such host")
    return PUBLIC_HOSTS[host]


@pytest.fixture
async def api(serve):
    async def start(dialogue: Dialogue | None = None) -> httpx.AsyncClient:
        dialogue = dialogue or make()
        srv = await serve(dialogue)
        assert dialogue.runtime.push is not None
        dialogue.runtime.push.resolver = fake_dns
        return httpx.AsyncClient(base_url=srv.http_url)

    return start


def as_user(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}"}


def webpush(endpoint: str = "https://push.example.net/send/abc", **extra: Any) -> dict[str, Any]:
    return {"kind": "webpush", "endpoint": endpoint, "keys": browser_keys(), **extra}


async def test_the_vapid_key_is_the_servers(api) -> None:
    async with await api() as http:
        response = await http.get("/push/vapid-public-key", headers=as_user("alice"))
        assert response.status_code == 200
        assert response.json() == {"public_key": vapid_public_key(VAPID)}
        assert (await http.get("/push/vapid-public-key")).status_code == 401


async def test_register_list_update_and_delete_own_only(api) -> None:
    async with await api() as http:
        alice, bob = as_user("alice"), as_user("bob")
        created = await http.post("/push/subscriptions", json=webpush(rooms=["design"]), headers=alice)
        assert created.status_code == 201
        reg_id = created.json()["id"]
        fcm = await http.post("/push/subscriptions", headers=alice,
                              json={"kind": "fcm", "token": "fcm-token:" + "x" * 140})
        apns = await http.post("/push/subscriptions", headers=alice, json={
            "kind": "apns", "token": "ab" * 32, "topic": "com.example.chat", "sandbox": True})
        assert fcm.status_code == apns.status_code == 201
        # the same endpoint again: the same id, updated (200)
        again = await http.post("/push/subscriptions", json=webpush(rooms=[]), headers=alice)
        assert again.status_code == 200 and again.json() == {"id": reg_id}
        listed = (await http.get("/push/subscriptions", headers=alice)).json()["subscriptions"]
        assert [(r["kind"], r["rooms"]) for r in listed] == [("webpush", []), ("fcm", []), ("apns", [])]
        assert listed[1]["target"] == "fcm-toke…xxxx" and "keys" not in listed[0]
        assert (await http.get("/push/subscriptions", headers=bob)).json() == {"subscriptions": []}
        refused = await http.delete(f"/push/subscriptions/{reg_id}", headers=bob)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "NOT_FOUND"
        assert (await http.delete(f"/push/subscriptions/{reg_id}", headers=alice)).status_code == 204
        assert len((await http.get("/push/subscriptions", headers=alice)).json()["subscriptions"]) == 2


@pytest.mark.parametrize(("endpoint", "why"), [
    ("http://push.example.net/x", "https"),
    ("https://127.0.0.1/x", "IP address"),
    ("https://[::1]/x", "IP address"),
    ("https://localhost/x", "not a public push service"),
    ("https://intranet/x", "not a public push service"),
    ("https://rebound.example.net/x", "non-public address"),
    ("https://unknown.example.net/x", "does not resolve"),
    ("https://user:pw@push.example.net/x", "credentials"),
    ("https://push.example.net:8443/x", "443"),
    ("https://push.example.net/x\x00y", "printable"),
    ("ftp://push.example.net/x", "https"),
])
async def test_endpoints_that_would_reach_inside_are_refused(api, endpoint: str, why: str) -> None:
    async with await api() as http:
        response = await http.post("/push/subscriptions", json=webpush(endpoint), headers=as_user("a"))
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "BAD_REQUEST"
        assert why in response.json()["error"]["message"]


async def test_an_allowlist_limits_the_push_services(api) -> None:
    async with await api(make(allowed_hosts=["push.services.mozilla.com"])) as http:
        ok = await http.post("/push/subscriptions", headers=as_user("a"),
                             json=webpush("https://updates.push.services.mozilla.com/wpush/v2/x"))
        assert ok.status_code == 201
        refused = await http.post("/push/subscriptions", json=webpush(), headers=as_user("a"))
        assert refused.status_code == 400 and "not an allowed push service" in refused.text


@pytest.mark.parametrize(("body", "why"), [
    ({"kind": "webpush", "endpoint": "https://push.example.net/x",
      "keys": {"p256dh": b64(b"\x04" + b"\x01" * 64), "auth": b64(os.urandom(16))}}, "P-256 curve"),
    ({"kind": "webpush", "endpoint": "https://push.example.net/x",
      "keys": {"p256dh": browser_keys()["p256dh"], "auth": b64(b"short")}}, "16 bytes"),
    ({"kind": "webpush", "endpoint": "https://push.example.net/x",
      "keys": {"p256dh": "not base64!", "auth": b64(os.urandom(16))}}, "base64url"),
    ({"kind": "fcm", "token": "short"}, "FCM registration token"),
    ({"kind": "fcm", "token": "x" * 40 + "<script>"}, "FCM registration token"),
    ({"kind": "apns", "token": "zz" * 32}, "APNs device token"),
    ({"kind": "apns", "token": "ab" * 32, "topic": "com example"}, "bundle id"),
])
async def test_bad_keys_and_tokens_are_refused(api, body: dict[str, Any], why: str) -> None:
    async with await api() as http:
        response = await http.post("/push/subscriptions", json=body, headers=as_user("a"))
        assert response.status_code == 400 and why in response.json()["error"]["message"]


async def test_malformed_bodies_are_bad_requests(api) -> None:
    async with await api() as http:
        for body in ({"kind": "carrier-pigeon", "token": "x"}, {"endpoint": "https://p.example.net"},
                     {"kind": "fcm"}, {"kind": "fcm", "token": "x" * 40, "extra": 1}):
            response = await http.post("/push/subscriptions", json=body, headers=as_user("a"))
            assert response.status_code in (400, 422) and "error" in response.json(), body


async def test_rooms_must_push_and_be_visible(api) -> None:
    async with await api() as http:
        for rooms, status, code in ((["plain"], 400, "BAD_REQUEST"), (["nope"], 404, "ROOM_NOT_FOUND"),
                                    (["secret"], 403, "FORBIDDEN"), (["bad room"], 400, "BAD_REQUEST")):
            response = await http.post("/push/subscriptions", json=webpush(rooms=rooms),
                                       headers=as_user("alice"))
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
        ok = await http.post("/push/subscriptions", json=webpush(rooms=["secret"]), headers=as_user("boss"))
        assert ok.status_code == 201


async def test_a_kind_the_server_does_not_send_is_refused(api) -> None:
    async with await api(make(fcm=None)) as http:
        response = await http.post("/push/subscriptions", headers=as_user("a"), json={
            "kind": "fcm", "token": "t" * 64})
        assert response.status_code == 400 and "does not send fcm" in response.text
    async with await api(make(vapid_private_key=None, vapid_subject=None)) as http:
        refused = await http.post("/push/subscriptions", json=webpush(), headers=as_user("a"))
        assert refused.status_code == 400 and "does not send webpush" in refused.text
        key = await http.get("/push/vapid-public-key", headers=as_user("a"))
        assert key.status_code == 400 and "no VAPID key" in key.text


async def test_registrations_per_user_are_capped(api) -> None:
    async with await api(make(max_registrations_per_user=2)) as http:
        for n in range(2):
            assert (await http.post("/push/subscriptions", headers=as_user("a"), json=webpush(
                f"https://push.example.net/{n}"))).status_code == 201
        third = await http.post("/push/subscriptions", json=webpush("https://push.example.net/3"),
                                headers=as_user("a"))
        assert third.status_code == 403 and "the limit is 2" in third.text
        again = await http.post("/push/subscriptions", json=webpush("https://push.example.net/0"),
                                headers=as_user("a"))
        assert again.status_code == 200  # re-registering an existing one is not a new one


async def test_push_routes_are_rate_limited(api) -> None:
    async with await api() as http:  # RateLimit(http={"push": "30/minute"}), per user
        codes = [(await http.get("/push/subscriptions", headers=as_user("a"))).status_code
                 for _ in range(31)]
        assert codes[:30] == [200] * 30 and codes[30] == 429
        assert (await http.get("/push/subscriptions", headers=as_user("b"))).status_code == 200


async def test_openapi_documents_a_body_per_kind_with_examples(api) -> None:
    async with await api() as http:
        spec = (await http.get("/openapi.json")).json()
    post = spec["paths"]["/push/subscriptions"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"webpush", "fcm", "apns"}
    assert body["schema"]["discriminator"]["propertyName"] == "kind"
    assert set(body["schema"]["discriminator"]["mapping"]) == {"webpush", "fcm", "apns"}
    assert {"201", "200", "400", "401", "403", "429"} <= set(post["responses"])
    assert "404" in spec["paths"]["/push/subscriptions/{registration_id}"]["delete"]["responses"]
    assert "/push/vapid-public-key" in spec["paths"]


async def test_without_push_there_are_no_push_routes(serve) -> None:
    srv = await serve(Dialogue(rooms={"a": RoomConfig(name="A")}, authenticate=authenticate))
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        assert (await http.get("/push/subscriptions", headers=as_user("a"))).status_code == 404
        assert "/push/subscriptions" not in (await http.get("/openapi.json")).json()["paths"]
