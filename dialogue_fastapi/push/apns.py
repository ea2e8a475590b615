"""APNs sender: Apple Push Notification service over HTTP/2 with a provider token.

One send is ``POST {base}/3/device/{token}`` on a shared HTTP/2 client, to the
production host, or to the sandbox host when ``Device.keys["sandbox"]`` is true (both
base URLs injectable). Headers: ``authorization: bearer <provider token>`` (see
:mod:`.apns_token`), ``apns-topic`` (``Device.keys["topic"]`` or the sender's default
bundle id), ``apns-push-type: alert``, ``apns-priority`` 10 (urgency high or normal) or
5 (low, very-low), ``apns-expiration`` now + TTL (0 when the TTL is 0: deliver now or
never) and, for a tagged notification, ``apns-collapse-id`` (the tag when it is
printable ASCII of at most 64 bytes, else the base64url of its SHA-256).

The payload is ``{...data, "url"?: url, "aps": {"alert": {"title", "body"},
"thread-id"?: tag}}`` in at most ``max_payload`` bytes (4,096, Apple's limit), trimmed
by the same rule as Web Push: body, then data, else FAILED ``"payload too large"``.

**Connections.** Apple closes HTTP/2 connections with GOAWAY (and idle ones without a
word); a send that finds its connection gone is sent once more, on a new connection,
and a second failure is RETRY.

**Answers.** 200 delivered; 410 ``Unregistered``, 400 ``BadDeviceToken`` and
``DeviceTokenNotForTopic`` GONE; 403 ``ExpiredProviderToken``/``InvalidProviderToken``
renew the token and send once more; 429, 500 and 503 RETRY; any other answer FAILED
with Apple's reason. A token that is not hexadecimal is GONE (``BadDeviceToken``)
without asking Apple.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from .apns_token import ApnsKey, ProviderToken
from .base import Device, Notification, Outcome, PushKind, SendResult
from .httpclient import ClientHolder, Verify, network_error, retry_after
from .payload import apns_collapse_id, fitted

__all__ = ["APNS_PRODUCTION", "APNS_SANDBOX", "ApnsSender"]

APNS_PRODUCTION = "https://api.push.apple.com"
APNS_SANDBOX = "https://api.sandbox.push.apple.com"
APNS_MAX_PAYLOAD = 4096
_TOKEN = re.compile(r"[0-9A-Fa-f]{16,200}")
_GONE_400 = {"BadDeviceToken", "DeviceTokenNotForTopic"}
_TOKEN_REJECTED = {"ExpiredProviderToken", "InvalidProviderToken"}


class ApnsSender:
    """Sends alerts to APNs device tokens (``Device.target``; keys ``topic``, ``sandbox``).

    ``key``: the .p8 private key (PEM text or path); ``key_id``, ``team_id``: from Apple's
    developer account; ``topic``: the default bundle id; ``production_url``,
    ``sandbox_url``: Apple's hosts (injectable); ``max_payload``: bytes (<= 4,096);
    ``timeout``, ``verify``, ``max_connections``: the httpx client; ``clock``: seconds
    since the epoch, for the provider token and ``apns-expiration``.
    """

    kind: PushKind = "apns"

    def __init__(self, key: ApnsKey, *, key_id: str, team_id: str, topic: str | None = None,
                 production_url: str = APNS_PRODUCTION, sandbox_url: str = APNS_SANDBOX,
                 max_payload: int = APNS_MAX_PAYLOAD, timeout: float = 10.0, verify: Verify = True,
                 max_connections: int = 10, clock: Callable[[], float] = time.time) -> None:
        if not 0 < max_payload <= APNS_MAX_PAYLOAD:
            raise ValueError(f"max_payload must be between 1 and {APNS_MAX_PAYLOAD} bytes")
        self._tokens = ProviderToken(key, key_id, team_id, clock=clock)
        self._topic = topic
        self._bases = {False: production_url.rstrip("/"), True: sandbox_url.rstrip("/")}
        self._max_payload = max_payload
        self._clock = clock
        self._client = ClientHolder(timeout=timeout, verify=verify, max_connections=max_connections,
                                    http2=True)

    async def send(self, device: Device, notification: Notification) -> SendResult:
        """One alert; a rejected provider token is renewed and the alert sent once more."""
        if not _TOKEN.fullmatch(device.target):
            return SendResult(Outcome.GONE, None, "BadDeviceToken")
        topic = device.keys.get("topic") or self._topic
        if not topic:
            return SendResult(Outcome.FAILED, None, "no apns-topic (bundle id) for this device")
        payload = fitted(_builder(notification), notification.body, self._max_payload)
        if isinstance(payload, SendResult):
            return payload
        url = f"{self._bases[bool(device.keys.get('sandbox'))]}/3/device/{device.target}"
        for attempt in (1, 2):
            token = self._tokens.current()
            headers = self._headers(notification, str(topic), token)
            response = await self._post(url, headers, payload)
            if isinstance(response, SendResult):
                return response
            result = classify(response)
            if attempt == 1 and response.status_code == 403 and result.reason in _TOKEN_REJECTED:
                self._tokens.rejected(token)
                continue
            return result
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the HTTP/2 connections."""
        await self._client.close()

    def _headers(self, n: Notification, topic: str, token: str) -> dict[str, str]:
        ttl = max(0, n.ttl)
        headers = {
            "authorization": f"bearer {token}",
            "apns-topic": topic,
            "apns-push-type": "alert",
            "apns-priority": "10" if n.urgency in ("high", "normal") else "5",
            "apns-expiration": str(int(self._clock()) + ttl) if ttl else "0",
            "content-type": "application/json",
        }
        if n.tag:
            headers["apns-collapse-id"] = apns_collapse_id(n.tag)
        return headers

    async def _post(self, url: str, headers: dict[str, str], payload: bytes) -> httpx.Response | SendResult:
        """POST, once more on a new connection when the first one was gone (GOAWAY, reset)."""
        for attempt in (1, 2):
            try:
                return await self._client.get().post(url, content=payload, headers=headers)
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if attempt == 2:
                    return network_error(exc)
            except httpx.TransportError as exc:  # a timeout: Apple may have it, do not repeat
                return network_error(exc)
        raise AssertionError("unreachable")


def classify(response: httpx.Response) -> SendResult:
    """Apple's answer as a :class:`SendResult` (the rules in the module docstring)."""
    status = response.status_code
    if status == 200:
        return SendResult.delivered(status)
    reason = _reason(response) or f"HTTP {status}"
    if status == 410 or (status == 400 and reason in _GONE_400):
        return SendResult(Outcome.GONE, status, reason)
    if status in (429, 500, 503):
        return SendResult(Outcome.RETRY, status, reason, retry_after(response.headers.get("retry-after")))
    return SendResult(Outcome.FAILED, status, reason)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("reason") or "") if isinstance(body, dict) else ""


def _builder(n: Notification) -> Callable[[str, bool], bytes]:
    def build(body: str, with_data: bool) -> bytes:
        alert = {"title": n.title, "body": body} if body else {"title": n.title}
        aps: dict[str, Any] = {"alert": alert}
        if n.tag:
            aps["thread-id"] = n.tag
        payload: dict[str, Any] = dict(n.data) if with_data else {}
        if n.url is not None:
            payload.setdefault("url", n.url)
        payload["aps"] = aps
        return orjson.dumps(payload)

    return build
