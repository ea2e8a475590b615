"""A Web Push service on 127.0.0.1 that checks what a real one checks, and decrypts.

Each subscription is made the way a browser makes one (a P-256 key pair and a 16-byte
auth secret); the service then, per POST to the subscription's endpoint:

- verifies ``Authorization: vapid t=<JWT>, k=<key>`` (RFC 8292): an ES256 signature by
  ``k``, ``aud`` equal to this service's origin, ``exp`` in the future and at most
  24 hours ahead, ``sub`` a ``mailto:`` or ``https:`` contact (else 401 or 403);
- checks ``TTL`` (required), ``Urgency`` and ``Topic`` (at most 32 URL-safe base64
  characters), ``Content-Encoding: aes128gcm`` and the 4,096-byte record (else 400/413);
- decrypts the body with the subscription's private key and auth secret (RFC 8291) and
  records the JSON with the headers;
- answers as the test scripted for that endpoint, else 201.
"""

from __future__ import annotations

import base64
import os
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import http_ece  # type: ignore[import-untyped]
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dialogue_fastapi.push.base import Device
from dialogue_fastapi.testing import LiveServer

_AUTH = re.compile(r"vapid t=([A-Za-z0-9_.-]+),\s*k=([A-Za-z0-9_-]+)")
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
URGENCIES = {"very-low", "low", "normal", "high"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class Subscription:
    """The browser's side: its endpoint, key pair and auth secret."""

    endpoint: str
    path: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def device(self, device_id: str = "d1", user_id: str = "u1") -> Device:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return Device(device_id, user_id, "webpush", self.endpoint,
                      {"p256dh": b64(point), "auth": b64(self.auth)})


@dataclass
class Received:
    path: str
    status: int
    payload: dict[str, Any]
    ttl: int
    urgency: str | None
    topic: str | None
    claims: dict[str, Any]
    size: int


class FakeWebPush:
    """``await start()``, ``subscribe()``, ``script(sub, ...)``; read ``received``/``rejected``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rejected: list[tuple[str, int, str]] = []
        self.origin = ""
        self._subscriptions: dict[str, Subscription] = {}
        self._scripts: dict[str, deque[Reply]] = {}
        self._always: dict[str, Reply] = {}
        self._server: LiveServer | None = None
        self.app = Starlette(routes=[Route("/push/{sid}", self._push, methods=["POST"])])

    async def start(self) -> None:
        self._server = LiveServer(self.app, "127.0.0.1", 0)
        await self._server.start()
        self.origin = self._server.http_url

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()

    def subscribe(self) -> Subscription:
        path = f"/push/{uuid.uuid4().hex}"
        sub = Subscription(self.origin + path, path, ec.generate_private_key(ec.SECP256R1()),
                           os.urandom(16))
        self._subscriptions[path] = sub
        return sub

    def script(self, sub: Subscription, *replies: Reply, always: Reply | None = None) -> None:
        """Answer ``replies`` in turn, then ``always`` (default 201)."""
        self._scripts[sub.path] = deque(replies)
        if always is not None:
            self._always[sub.path] = always

    def for_path(self, sub: Subscription) -> list[Received]:
        return [r for r in self.received if r.path == sub.path]

    async def _push(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        sub = self._subscriptions.get(path)
        if sub is None:
            return self._reject(path, 404, "no such subscription")
        claims = self._check_vapid(path, request.headers.get("authorization", ""))
        if isinstance(claims, Response):
            return claims
        problem = self._check_headers(request, body)
        if problem is not None:
            return self._reject(path, *problem)
        try:
            plaintext = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth,
                                         version="aes128gcm")
            payload = orjson.loads(plaintext)
        except Exception as exc:
            return self._reject(path, 400, f"cannot decrypt: {exc!r}")
        scripted = self._scripts.get(path)
        reply = scripted.popleft() if scripted else self._always.get(path, Reply(201))
        topic = request.headers.get("topic")
        self.received.append(Received(path, reply.status, payload, int(request.headers["ttl"]),
                                      request.headers.get("urgency"), topic, claims, len(plaintext)))
        return Response(reply.body, reply.status, headers=reply.headers)

    def _reject(self, path: str, status: int, reason: str) -> Response:
        self.rejected.append((path, status, reason))
        return Response(reason, status)

    def _check_vapid(self, path: str, header: str) -> dict[str, Any] | Response:
        match = _AUTH.fullmatch(header)
        if match is None:
            return self._reject(path, 401, f"no vapid authorization: {header!r}")
        token, key = match.groups()
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(key))
            claims: dict[str, Any] = jwt.decode(token, public, algorithms=["ES256"], audience=self.origin,
                                                options={"require": ["aud", "exp", "sub"]})
        except (ValueError, jwt.PyJWTError) as exc:
            return self._reject(path, 401, f"bad vapid token: {exc!r}")
        if claims["exp"] > time.time() + 24 * 3600:
            return self._reject(path, 403, "vapid exp more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return self._reject(path, 403, "vapid sub is not a contact")
        return claims

    @staticmethod
    def _check_headers(request: Request, body: bytes) -> tuple[int, str] | None:
        headers = request.headers
        if headers.get("content-encoding") != "aes128gcm":
            return 400, "content-encoding must be aes128gcm"
        if not headers.get("ttl", "").isdigit():
            return 400, "TTL header missing or not a number"
        if headers.get("urgency", "normal") not in URGENCIES:
            return 400, "bad Urgency"
        if "topic" in headers and not _TOPIC.fullmatch(headers["topic"]):
            return 400, "bad Topic"
        if len(body) > 4096:
            return 413, "payload exceeds the 4096-byte record"
        return None
