"""An FCM HTTP v1 service and Google token endpoint on 127.0.0.1, in their own thread.

- ``POST /token``: the service-account JWT grant. The RS256 assertion must be signed by
  the service account's key (``kid`` its key id), ``iss`` its email, ``aud`` Google's
  token endpoint (google-auth always names it, whatever ``token_uri`` says), ``scope``
  FCM's (or cloud-platform); answers an access token with ``expires_in``
  or Google's ``invalid_grant``. ``hold()`` makes it wait until ``release()`` (or its
  hold timeout, which is recorded so a test can tell).
- ``POST /v1/projects/{id}/messages:send``: the bearer token must be one it issued and
  not revoked (else 401 UNAUTHENTICATED); the message must have FCM's shape (known
  fields, string data values, ``ttl`` like ``"3600s"``; else INVALID_ARGUMENT); then
  it answers as scripted for the registration token, with FCM's real error bodies.

It runs in a thread because google-auth refreshes with a blocking call.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import urllib.parse
import uuid
from collections import deque
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .threaded import ThreadedServer

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
SCOPES = {"https://www.googleapis.com/auth/firebase.messaging",
          "https://www.googleapis.com/auth/cloud-platform"}
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_MESSAGE_FIELDS = {"name", "token", "topic", "condition", "data", "notification", "android", "webpush",
                   "apns", "fcm_options"}
_TTL = re.compile(r"\d+(\.\d{1,9})?s")
_BAD_TOKEN = "The registration token is not a valid FCM registration token"

# FCM's error answers: HTTP status, error.status, message, FcmError errorCode (None: no details)
ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
    "INVALID_TOKEN": (400, "INVALID_ARGUMENT", _BAD_TOKEN, "INVALID_ARGUMENT"),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                         "INVALID_ARGUMENT"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'.",
                       "QUOTA_EXCEEDED"),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service",
                               "THIRD_PARTY_AUTH_ERROR"),
    "UNAUTHENTICATED": (401, "UNAUTHENTICATED", "Request had invalid authentication credentials. "
                        "Expected OAuth 2 access token, login cookie or other valid authentication "
                        "credential.", None),
}


def error_response(name: str, headers: dict[str, str] | None = None) -> Response:
    status, state, message, code = ERRORS[name]
    details: list[dict[str, Any]] = []
    if code is not None:
        details.append({"@type": _FCM_ERROR, "errorCode": code})
    if name == "INVALID_TOKEN":
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": "message.token", "description": _BAD_TOKEN}]})
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if details:
        error["details"] = details
    return Response(orjson.dumps({"error": error}), status, headers=headers,
                    media_type="application/json")


def service_account(token_uri: str, project_id: str = "demo-project") -> tuple[dict[str, Any], Any]:
    """A service-account JSON (as Google issues it) and its RSA public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {
        "type": "service_account", "project_id": project_id, "private_key_id": uuid.uuid4().hex,
        "private_key": pem, "client_email": f"push@{project_id}.iam.gserviceaccount.com",
        "client_id": "1234567890", "token_uri": token_uri,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    }
    return info, key.public_key()


class FakeFcm:
    """``start()``; ``account`` is the service-account JSON pointing at this token endpoint."""

    def __init__(self, project_id: str = "demo-project", expires_in: int = 3600) -> None:
        self.project_id = project_id
        self.expires_in = expires_in
        self.token_requests: list[dict[str, Any]] = []  # the verified assertions
        self.token_rejections: list[str] = []
        self.messages: list[tuple[str, dict[str, Any]]] = []  # (bearer token, message)
        self.rejected: list[str] = []
        self.token_waiting = threading.Event()
        self.released_by: str | None = None
        self._hold: asyncio.Event | None = None
        self._hold_timeout = 0.0
        self._valid: set[str] = set()
        self._scripts: dict[str, deque[tuple[str, dict[str, str]]]] = {}
        self._counter = itertools.count(1)
        self.server = ThreadedServer(Starlette(routes=[
            Route("/token", self._token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
        ]))
        self.account: dict[str, Any] = {}
        self._public_key: Any = None

    def start(self) -> None:
        self.server.start()
        self.account, self._public_key = service_account(self.token_uri, self.project_id)

    def stop(self) -> None:
        self.release()
        self.server.stop()

    @property
    def token_uri(self) -> str:
        return f"{self.server.url}/token"

    @property
    def base_url(self) -> str:
        return self.server.url

    def script(self, registration_token: str, *errors: str, retry_after: str | None = None) -> None:
        """Answer the next messages to ``registration_token`` with these ERRORS names, in turn."""
        headers = {"Retry-After": retry_after} if retry_after else {}
        self._scripts[registration_token] = deque((name, headers) for name in errors)

    def revoke_tokens(self) -> None:
        """Every access token issued so far is refused from now on (401)."""
        self._valid.clear()

    def hold(self, timeout: float) -> None:
        """Token requests wait until :meth:`release` (or ``timeout``, recorded in ``released_by``)."""
        self._hold = asyncio.Event()
        self._hold_timeout = timeout

    def release(self) -> None:
        if self._hold is not None:
            self.server.call(self._hold.set)

    def issued(self) -> list[str]:
        return [str(request["access_token"]) for request in self.token_requests]

    async def _token(self, request: Request) -> Response:
        form = urllib.parse.parse_qs((await request.body()).decode())
        if self._hold is not None:
            self.token_waiting.set()
            try:
                await asyncio.wait_for(self._hold.wait(), self._hold_timeout)
                self.released_by = self.released_by or "test"
            except TimeoutError:
                self.released_by = "timeout"
        try:
            assert form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "grant_type"
            assertion = form["assertion"][0]
            header = jwt.get_unverified_header(assertion)
            assert header.get("kid") == self.account["private_key_id"], "kid"
            claims = jwt.decode(assertion, self._public_key, algorithms=["RS256"],
                                audience=GOOGLE_TOKEN_AUDIENCE, issuer=self.account["client_email"],
                                options={"require": ["iss", "aud", "iat", "exp", "scope"]})
            assert SCOPES & set(str(claims["scope"]).split()), "scope"
        except (AssertionError, KeyError, jwt.PyJWTError) as exc:
            self.token_rejections.append(repr(exc))
            return Response(orjson.dumps({"error": "invalid_grant", "error_description": "Invalid JWT "
                                          f"Signature. ({exc!r})"}), 400, media_type="application/json")
        token = f"ya29.fake-{next(self._counter)}-{uuid.uuid4().hex}"
        self._valid.add(token)
        self.token_requests.append({**claims, "access_token": token})
        return Response(orjson.dumps({"access_token": token, "expires_in": self.expires_in,
                                      "token_type": "Bearer"}), media_type="application/json")

    async def _send(self, request: Request) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if request.path_params["project"] != self.project_id:
            self.rejected.append(f"project {request.path_params['project']}")
            return error_response("UNREGISTERED")
        if bearer not in self._valid:
            return error_response("UNAUTHENTICATED")
        try:
            message = orjson.loads(await request.body())["message"]
            problem = _shape_problem(message)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            problem = repr(exc)
        if problem is not None:
            self.rejected.append(problem)
            return error_response("INVALID_ARGUMENT")
        self.messages.append((bearer, message))
        script = self._scripts.get(message["token"])
        if script:
            name, headers = script.popleft()
            return error_response(name, headers)
        name = f"projects/{self.project_id}/messages/0:{next(self._counter)}"
        return Response(orjson.dumps({"name": name}), media_type="application/json")


def _shape_problem(message: dict[str, Any]) -> str | None:
    """What FCM would refuse in this message (None: it is well formed)."""
    unknown = set(message) - _MESSAGE_FIELDS
    if unknown:
        return f"unknown fields {unknown}"
    if not isinstance(message.get("token"), str):
        return "token missing"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in message.get("data", {}).items()):
        return "data values must be strings"
    android = message.get("android", {})
    if "ttl" in android and not _TTL.fullmatch(android["ttl"]):
        return f"bad android.ttl {android['ttl']!r}"
    if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
        return "bad android.priority"
    for section in ("webpush", "apns"):
        headers = message.get(section, {}).get("headers", {})
        if not all(isinstance(v, str) for v in headers.values()):
            return f"{section}.headers values must be strings"
    return None
