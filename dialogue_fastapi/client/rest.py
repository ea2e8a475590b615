"""Push registration over the REST API beside the WebSocket endpoint (``/push/...``).

The REST routes live under the same prefix as ``/ws``: ``ws://host/dialogue/ws`` has
them at ``http://host/dialogue`` (``http_url=`` overrides it). Requests carry the
client's credentials the way the handshake does: ``token`` as ``Authorization:
Bearer`` (and as ``?token=`` with ``token_in_query=True``) plus the client's
``headers``. They need httpx (``pip install httpx``, in the ``push`` extra), imported
on first use so that a client that never registers a device does not need it.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from .core import ClientCore
from .errors import DialogueClientError
from .handlers import Frame
from .policy import handshake_headers, with_token

PushKind = Literal["webpush", "fcm", "apns"]


def rest_base(ws_url: str) -> str:
    """``ws[s]://host/prefix/ws`` (or ``/sse``) -> ``http[s]://host/prefix``."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    for tail in ("/ws", "/sse"):
        if path.endswith(tail):
            path = path[: -len(tail)]
            break
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class RestClient(ClientCore):
    """`DialogueClient`'s REST calls: push registration with the client's credentials."""

    async def register_push(
        self,
        kind: PushKind,
        *,
        endpoint: str | None = None,
        keys: dict[str, str] | None = None,
        token: str | None = None,
        topic: str | None = None,
        sandbox: bool | None = None,
        rooms: list[str] | None = None,
    ) -> str:
        """Register a device of this user for push notifications; returns its id.

        ``"webpush"`` takes ``endpoint`` and ``keys`` (``{"p256dh", "auth"}``, a browser's
        ``PushSubscription.toJSON()``); ``"fcm"`` a registration ``token``; ``"apns"`` a
        device ``token`` with optional ``topic`` and ``sandbox``. ``rooms``: rooms to be
        notified of besides those the user is a member of. Registering the same
        endpoint or token again updates it and returns the same id.
        """
        body: dict[str, Any] = {"kind": kind, "rooms": list(rooms or [])}
        if kind == "webpush":
            if endpoint is None or keys is None:
                raise DialogueClientError("BAD_REQUEST", "webpush needs endpoint= and keys=")
            body.update(endpoint=endpoint, keys=dict(keys))
        else:
            if token is None:
                raise DialogueClientError("BAD_REQUEST", f"{kind} needs token=")
            body["token"] = token
            if kind == "apns":
                body.update({k: v for k, v in (("topic", topic), ("sandbox", sandbox))
                             if v is not None})
        answer = await self.rest("POST", "/push/subscriptions", body)
        return str(answer["id"])

    async def push_registrations(self) -> list[Frame]:
        """This user's registrations (``id``, ``kind``, ``target``, ``rooms``, ``created_at``,
        ``last_success_at``, ``failures``); never their keys."""
        answer = await self.rest("GET", "/push/subscriptions")
        found = answer.get("subscriptions")
        return found if isinstance(found, list) else []

    async def unregister_push(self, registration_id: str) -> None:
        """Delete one of this user's registrations (``NOT_FOUND`` when it is not theirs)."""
        await self.rest("DELETE", f"/push/subscriptions/{quote(registration_id, safe='')}")

    async def vapid_public_key(self) -> str:
        """The server's VAPID application server key (base64url)."""
        return str((await self.rest("GET", "/push/vapid-public-key"))["public_key"])

    async def rest(self, method: str, path: str, body: Any = None) -> Frame:
        """One REST call with the client's credentials; the JSON answer (``{}`` for 204).

        Raises `DialogueClientError` with the server's error code, ``NOT_FOUND`` for a
        route the server does not have (no ``push=``), ``UNAVAILABLE`` when it cannot
        be reached, ``TIMEOUT`` after ``ack_timeout``.
        """
        try:
            import httpx
        except ImportError:  # pragma: no cover - depends on the environment
            raise DialogueClientError(
                "UNAVAILABLE", 'the REST calls need httpx: pip install "dialogue-fastapi[push]"'
            ) from None
        url = (self.http_url or rest_base(self.url)) + path
        if self.token_in_query:
            url = with_token(url, self.token)
        headers = handshake_headers(self.headers, self.token)
        try:
            async with httpx.AsyncClient(timeout=self.ack_timeout) as http:
                response = await http.request(method, url, headers=headers, json=body)
        except httpx.TimeoutException:
            raise DialogueClientError("TIMEOUT", f"{method} {path}: no answer") from None
        except httpx.HTTPError as exc:
            raise DialogueClientError("UNAVAILABLE", f"{method} {path}: {exc}") from None
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {}
        if response.is_error:
            error = answer.get("error") if isinstance(answer, dict) else None
            if isinstance(error, dict):
                raise DialogueClientError.from_wire(error)
            code = "NOT_FOUND" if response.status_code == 404 else "UNAVAILABLE"
            raise DialogueClientError(code, f"{method} {path}: HTTP {response.status_code}")
        return answer if isinstance(answer, dict) else {"result": answer}
