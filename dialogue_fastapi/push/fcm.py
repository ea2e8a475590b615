"""FCM sender: Firebase Cloud Messaging HTTP v1 over httpx, with firebase-admin's credentials.

firebase-admin loads the service account (``credentials.Certificate``, see
:mod:`.fcm_auth`); its messaging client is not used, because it cannot be pointed at
another host (only by patching private class constants, so no local fake in tests),
its OAuth token refresh is a blocking call on the event loop (a slow token endpoint
would stop every connection of the node), and its client breaks on a second event
loop. Its synchronous ``send_each`` also starts a thread per message. So this sender
POSTs ``{base_url}/v1/projects/{project_id}/messages:send`` itself on a shared
:class:`httpx.AsyncClient`, with a bearer token from those credentials refreshed in a
worker thread (:mod:`.fcm_auth`).

The message: ``notification`` title/body; ``data`` as a string map (non-string values
JSON-encoded, plus ``url`` unless ``data`` has one); ``android`` ``ttl``, ``priority``
(HIGH unless the urgency is low or very-low) and the tag as ``collapse_key`` and
notification ``tag``; ``webpush`` ``TTL``/``Urgency``/``Topic`` headers (and the url as
``fcm_options.link`` when it is https); ``apns`` ``apns-priority``/``apns-expiration``/
``apns-collapse-id`` headers. The TTL is capped at FCM's 28 days.

**Answers** (FCM's ``error.details[].errorCode``, else ``error.status``):
``UNREGISTERED``, ``SENDER_ID_MISMATCH`` and an ``INVALID_ARGUMENT`` about the
registration token are GONE; other ``INVALID_ARGUMENT`` and ``THIRD_PARTY_AUTH_ERROR``
are FAILED; ``QUOTA_EXCEEDED`` (429), ``UNAVAILABLE`` (503), ``INTERNAL`` (500) and any
5xx RETRY with ``Retry-After``; another 401 refreshes the token once and sends again
within the same call (a second 401 is FAILED); no answer is RETRY, and so is a token
endpoint that cannot be reached (a refused refresh is FAILED).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import google.auth.exceptions
import httpx
import orjson

from .base import Device, Notification, Outcome, PushKind, SendResult
from .fcm_auth import AccessToken, ServiceAccount, load_credentials
from .httpclient import ClientHolder, Verify, network_error, retry_after
from .payload import apns_collapse_id, webpush_topic

__all__ = ["FcmSender"]

FCM_BASE_URL = "https://fcm.googleapis.com"
FCM_MAX_TTL = 28 * 24 * 3600
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_GONE = {"UNREGISTERED", "SENDER_ID_MISMATCH"}
_RETRY = {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"}


class FcmSender:
    """Sends to FCM registration tokens (``Device.target``).

    ``service_account``: a service-account JSON path or dict (loaded by firebase-admin), a
    ``firebase_admin.credentials.Certificate``, or google-auth credentials;
    ``project_id``: defaults to the credentials' project; ``base_url``: FCM's (injectable);
    ``timeout``, ``verify``, ``max_connections``: the httpx client (the token endpoint is
    reached with requests and its own CA settings); ``token_margin``: refresh the access
    token this many seconds before it expires; ``clock``: for that margin.
    """

    kind: PushKind = "fcm"

    def __init__(self, service_account: ServiceAccount, *, project_id: str | None = None,
                 base_url: str = FCM_BASE_URL, timeout: float = 10.0, verify: Verify = True,
                 max_connections: int = 16, token_margin: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        credentials = load_credentials(service_account)
        project = project_id or getattr(credentials, "project_id", None)
        if not project:
            raise ValueError("FcmSender needs a project_id (the credentials name none)")
        self._url = f"{base_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self._token = AccessToken(credentials, margin=token_margin, timeout=timeout, clock=clock)
        self._client = ClientHolder(timeout=timeout, verify=verify, max_connections=max_connections)
        self._clock = clock

    async def send(self, device: Device, notification: Notification) -> SendResult:
        """One message; a 401 refreshes the token and sends once more."""
        try:
            body = orjson.dumps({"message": message(device.target, notification, self._clock())})
        except orjson.JSONEncodeError as exc:
            return SendResult(Outcome.FAILED, None, f"payload is not JSON: {exc}")
        for attempt in (1, 2):
            try:
                token = await self._token.get()
            except google.auth.exceptions.GoogleAuthError as exc:
                return _auth_failure(exc)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            try:
                response = await self._client.get().post(self._url, content=body, headers=headers)
            except httpx.TransportError as exc:
                return network_error(exc)
            if (attempt == 1 and response.status_code == 401
                    and _error_code(_error(response)) != "THIRD_PARTY_AUTH_ERROR"):
                self._token.invalidate(token)  # revoked or expired early: one fresh token, once
                continue
            return classify(response)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the HTTP client and the token endpoint's session."""
        await self._client.close()
        self._token.close()


def message(token: str, n: Notification, now: float) -> dict[str, Any]:
    """The HTTP v1 ``message`` object for one notification."""
    ttl = min(max(0, n.ttl), FCM_MAX_TTL)
    high = n.urgency in ("high", "normal")
    data = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in n.data.items()}
    if n.url is not None:
        data.setdefault("url", n.url)
    android: dict[str, Any] = {"ttl": f"{ttl}s", "priority": "HIGH" if high else "NORMAL"}
    webpush: dict[str, Any] = {"headers": {"TTL": str(ttl), "Urgency": n.urgency}}
    apns_headers = {"apns-priority": "10" if high else "5",
                    "apns-expiration": str(int(now) + ttl) if ttl else "0"}
    if n.tag:
        android["collapse_key"] = n.tag
        android["notification"] = {"tag": n.tag}
        webpush["headers"]["Topic"] = webpush_topic(n.tag)
        apns_headers["apns-collapse-id"] = apns_collapse_id(n.tag)
    if n.icon is not None:
        webpush["notification"] = {"icon": n.icon}
    if n.url is not None and n.url.startswith("https://"):
        webpush["fcm_options"] = {"link": n.url}
    notification = {"title": n.title, "body": n.body} if n.body else {"title": n.title}
    body: dict[str, Any] = {"token": token, "notification": notification, "android": android,
                            "webpush": webpush, "apns": {"headers": apns_headers}}
    if data:
        body["data"] = data
    return body


def classify(response: httpx.Response) -> SendResult:
    """FCM's answer as a :class:`SendResult` (the rules in the module docstring)."""
    status = response.status_code
    if 200 <= status < 300:
        return SendResult.delivered(status)
    error = _error(response)
    code, text = _error_code(error), str(error.get("message") or "")
    wait = retry_after(response.headers.get("retry-after"))
    if code in _GONE or (code == "INVALID_ARGUMENT" and _bad_token(error, text)):
        return SendResult(Outcome.GONE, status, code)
    if code in _RETRY or status == 429 or status >= 500:
        return SendResult(Outcome.RETRY, status, code, wait)
    return SendResult(Outcome.FAILED, status, f"{code}: {text}"[:300] if text else code)


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(error: dict[str, Any]) -> str:
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == _FCM_ERROR and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status") or f"HTTP {error.get('code', '?')}")


def _bad_token(error: dict[str, Any], text: str) -> bool:
    """An INVALID_ARGUMENT about the registration token (not about the message)."""
    if "registration token" in text.lower():
        return True
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == _BAD_REQUEST:
            fields = [v.get("field") for v in detail.get("fieldViolations") or () if isinstance(v, dict)]
            if "message.token" in fields:
                return True
    return False


def _auth_failure(exc: google.auth.exceptions.GoogleAuthError) -> SendResult:
    retryable = isinstance(exc, google.auth.exceptions.TransportError) or getattr(exc, "retryable", False)
    reason = f"access token: {exc}"[:300]
    return SendResult(Outcome.RETRY if retryable else Outcome.FAILED, None, reason)
