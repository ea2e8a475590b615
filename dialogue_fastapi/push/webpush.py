"""Web Push sender: VAPID-signed, aes128gcm-encrypted POSTs to a browser's push service.

pywebpush does the Web Push work: ``WebPusher(subscription).encode(..., "aes128gcm")``
encrypts the payload and py_vapid (its VAPID library) signs the header. The POST is
ours, on one HTTP client the sender shares between its sends (pywebpush's own send
paths make a client per call or leave its options to the caller; ours has the
senders' timeouts and no-redirect rule). One send is one POST to the subscription's
endpoint:

- ``Authorization: vapid t=<JWT>,k=<public key>`` signed from a fresh claims dict
  (``aud`` = the endpoint's origin, ``exp`` = now + 12 h), reused per push service for
  a few minutes (see :mod:`.vapid`);
- the body is :meth:`Notification.payload` as compact UTF-8 JSON, encrypted for the
  subscription's ``p256dh`` and ``auth`` keys with aes128gcm (RFC 8291, one record,
  a new ephemeral key and salt per message);
- ``TTL`` = ``Notification.ttl`` (a day by default, so a device that is off overnight
  still gets it; pywebpush's default of 0 drops it), ``Urgency`` = ``Notification.urgency``
  and, when the notification has a tag, ``Topic`` (a later message with the same topic
  replaces an undelivered one): the tag itself when it is at most 32 characters of
  ``A-Z a-z 0-9 - _``, otherwise the first 32 characters of the URL-safe base64 of its
  SHA-256.

**Payload limit.** ``max_payload`` bytes of plaintext, 3,070 by default (Firefox for
Android refuses more; at most 3,993, what one 4,096-byte record holds). A larger
payload has its ``body`` trimmed with an ellipsis, then its ``data`` dropped, and is
refused as FAILED ``"payload too large"`` when even that does not fit (see
:mod:`.payload`).

**Transport.** ``transport="aiohttp"`` (the default) posts on a shared
:class:`aiohttp.ClientSession` (HTTP/1.1, a pool of ``max_connections`` keep-alive
connections; aiohttp is installed with pywebpush, whose async path uses it);
``transport="httpx"`` on a shared :class:`httpx.AsyncClient`, over HTTP/2 when
``http2`` and the push service offers it over TLS. aiohttp is the default because it
meets the target of 1,000 sends/s from one worker, encryption included, and httpx does
not: in ``benchmarks/push.py`` (2 shared vCPUs, medians of 3) one sender did ~1,600
sends/s on aiohttp at 0.59 ms of CPU per send (0.25 ms of it payload, encryption and
key check; 0.34 ms aiohttp and the event loop), against 344/s at 2.9 ms on httpx over
HTTP/1.1 (2.65 ms in httpx/httpcore, whose pool scans every connection per request)
and ~520/s at 1.9 ms on httpx over HTTP/2. aiohttp speaks HTTP/1.1 only, which the browsers'
push services accept (pywebpush's own sends are HTTP/1.1 too).

**Answers.** 2xx delivered; 404 and 410 GONE (the subscription expired or was
unsubscribed); 408, 429 and 5xx RETRY with ``Retry-After`` (seconds or an HTTP-date)
when given; no answer (refused, dropped, timed out) RETRY; anything else (400, 401,
403, 413, a redirect) FAILED. A subscription whose keys do not decode is GONE: it can
never be delivered to.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Literal, Protocol

import aiohttp
import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import WebPusher, WebPushException  # type: ignore[import-untyped]

from .base import Device, Notification, Outcome, PushKind, SendResult
from .httpclient import ClientHolder, SessionHolder, Verify, body_text, network_error, retry_after
from .payload import fitted, webpush_topic
from .vapid import (
    VAPID_REUSE,
    VapidKey,
    VapidSigner,
    b64url_decode,
    generate_vapid_key,
    origin,
    vapid_public_key,
)

__all__ = ["WEBPUSH_MAX_PAYLOAD", "Transport", "WebPushSender", "generate_vapid_key", "vapid_public_key"]

Transport = Literal["aiohttp", "httpx"]

#: Firefox for Android's limit on the decrypted payload
WEBPUSH_MAX_PAYLOAD = 3070
#: what one 4,096-byte aes128gcm record holds (4,096 - 86 header - 16 tag - 1 delimiter)
WEBPUSH_RECORD_PAYLOAD = 3993


class WebPushSender:
    """Sends to Web Push subscriptions (``Device.target`` = endpoint, keys ``p256dh``/``auth``).

    ``vapid_private_key``: PEM text, base64url raw key, a file path or a key object;
    ``vapid_subject``: ``mailto:`` or ``https:`` contact; ``max_payload``: plaintext bytes
    (1..3,993); ``timeout``: seconds per request; ``verify``: TLS verification (``True``,
    ``False``, a CA file or directory, an :class:`ssl.SSLContext`); ``max_connections``:
    the client's pool size; ``transport``: ``"aiohttp"`` (default) or ``"httpx"`` (see
    the module docstring); ``http2`` (httpx only): speak HTTP/2 to push services that
    offer it over TLS (one connection per service carries every send at once, and httpx
    spends less CPU per send than over a pool of HTTP/1.1 connections: see
    ``benchmarks/push.py``); plain ``http://`` endpoints get HTTP/1.1;
    ``vapid_reuse``: seconds a signed VAPID header is reused for the same push service.
    """

    kind: PushKind = "webpush"

    def __init__(self, vapid_private_key: VapidKey, vapid_subject: str, *,
                 max_payload: int = WEBPUSH_MAX_PAYLOAD, timeout: float = 10.0,
                 verify: Verify = True, max_connections: int = 16, transport: Transport = "aiohttp",
                 http2: bool = True, vapid_reuse: float = VAPID_REUSE,
                 clock: Callable[[], float] = time.time) -> None:
        if not 0 < max_payload <= WEBPUSH_RECORD_PAYLOAD:
            raise ValueError(f"max_payload must be between 1 and {WEBPUSH_RECORD_PAYLOAD} bytes")
        self._signer = VapidSigner(vapid_private_key, vapid_subject, reuse=vapid_reuse, clock=clock)
        self._max_payload = max_payload
        self._transport: _Poster
        if transport == "aiohttp":
            self._transport = _AiohttpPoster(timeout=timeout, verify=verify, max_connections=max_connections)
        elif transport == "httpx":
            self._transport = _HttpxPoster(timeout=timeout, verify=verify, max_connections=max_connections,
                                           http2=http2)
        else:
            raise ValueError(f"transport must be 'aiohttp' or 'httpx', not {transport!r}")
        self.transport: Transport = transport

    @property
    def public_key(self) -> str:
        """The application server key (``GET /push/vapid-public-key``)."""
        return self._signer.public_key

    async def send(self, device: Device, notification: Notification) -> SendResult:
        """One POST to the endpoint; the answer classified."""
        audience = origin(device.target)
        if audience is None:
            return SendResult(Outcome.FAILED, None, "endpoint is not an http(s) URL")
        if not _valid_keys(device):
            return SendResult(Outcome.GONE, None, "invalid subscription keys")
        plaintext = fitted(_builder(notification), notification.body, self._max_payload)
        if isinstance(plaintext, SendResult):
            return plaintext
        try:
            authorization = self._signer.authorization(audience)
        except ValueError as exc:  # py_vapid refuses the audience (an IPv6 literal host)
            return SendResult(Outcome.FAILED, None, str(exc))
        try:
            body = encrypt(device, plaintext)
        except (WebPushException, ValueError) as exc:
            return SendResult(Outcome.GONE, None, f"invalid subscription keys: {exc}")
        headers = {
            "Authorization": authorization,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(max(0, notification.ttl)),
            "Urgency": notification.urgency,
        }
        if notification.tag:
            headers["Topic"] = webpush_topic(notification.tag)
        return await self._transport.post(device.target, body, headers)

    async def close(self) -> None:
        """Close the HTTP client (a later send makes a new one)."""
        await self._transport.close()


class _Poster(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult: ...

    async def close(self) -> None: ...


class _AiohttpPoster:
    """POSTs on a shared :class:`aiohttp.ClientSession` (made in the loop of the first send)."""

    def __init__(self, *, timeout: float, verify: Verify, max_connections: int) -> None:
        self.session = SessionHolder(timeout=timeout, verify=verify, max_connections=max_connections)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        session = self.session.get()
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                    **self.session.proxy(url)) as response:
                status = response.status
                answer = await response.read()  # read to the end, so the connection is reused
                if 200 <= status < 300:
                    return SendResult.delivered(status)
                return classify(status, response.headers.get("Retry-After"), _text(answer, response.charset))
        except aiohttp.InvalidURL as exc:
            return SendResult(Outcome.FAILED, None, f"invalid endpoint URL: {exc}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return network_error(exc)

    async def close(self) -> None:
        await self.session.close()


def _text(body: bytes, charset: str | None, limit: int = 200) -> str:
    """The start of an error answer's body, for a reason string."""
    try:
        return body[:limit * 4].decode(charset or "utf-8", "replace")[:limit].strip()
    except LookupError:  # an unknown charset
        return body[:limit * 4].decode("utf-8", "replace")[:limit].strip()


class _HttpxPoster:
    """POSTs on a shared :class:`httpx.AsyncClient` (HTTP/2 when asked and offered over TLS)."""

    def __init__(self, *, timeout: float, verify: Verify, max_connections: int, http2: bool) -> None:
        self.client = ClientHolder(timeout=timeout, verify=verify, max_connections=max_connections,
                                   http2=http2)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        try:
            response = await self.client.get().post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            return network_error(exc)
        status = response.status_code
        if 200 <= status < 300:
            return SendResult.delivered(status)
        return classify(status, response.headers.get("retry-after"), body_text(response))

    async def close(self) -> None:
        await self.client.close()


def classify(status: int, retry_after_header: str | None, text: str = "") -> SendResult:
    """A push service's answer as a :class:`SendResult` (the rules in the module docstring)."""
    if 200 <= status < 300:
        return SendResult.delivered(status)
    reason = text or f"HTTP {status}"
    if status in (404, 410):
        return SendResult(Outcome.GONE, status, reason)
    if status in (408, 429) or status >= 500:
        return SendResult(Outcome.RETRY, status, reason, retry_after(retry_after_header))
    return SendResult(Outcome.FAILED, status, reason)


def _builder(notification: Notification) -> Callable[[str, bool], bytes]:
    def build(body: str, with_data: bool) -> bytes:
        changed = dataclasses.replace(notification, body=body,
                                      data=notification.data if with_data else {})
        return orjson.dumps(changed.payload())

    return build


def _valid_keys(device: Device) -> bool:
    """``p256dh`` a P-256 point and ``auth`` 16 bytes (pywebpush checks neither)."""
    try:
        point = b64url_decode(str(device.keys["p256dh"]))
        auth = b64url_decode(str(device.keys["auth"]))
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except (KeyError, ValueError):
        return False
    return len(auth) == 16


def encrypt(device: Device, plaintext: bytes) -> bytes:
    """RFC 8291 aes128gcm by pywebpush (an ephemeral ECDH key and salt per message)."""
    subscription = {"endpoint": device.target,
                    "keys": {"p256dh": str(device.keys["p256dh"]), "auth": str(device.keys["auth"])}}
    encoded = WebPusher(subscription).encode(plaintext, content_encoding="aes128gcm")
    body: bytes = encoded["body"]
    return body
