"""The OAuth access token for FCM HTTP v1, refreshed off the event loop.

google-auth refreshes credentials with a blocking HTTP call (requests). On the event
loop that call would stop every connection of the node for as long as the token
endpoint takes, so here it runs in a worker thread (:func:`asyncio.to_thread`), one
refresh at a time (concurrent sends wait for the same refresh behind a lock), and
starts ``margin`` seconds before the token expires. A 401 from FCM invalidates only
the token it was sent with, so sends that raced a refresh do not refresh again.

Credentials are loaded by firebase-admin: a service-account JSON file path or dict goes
through ``firebase_admin.credentials.Certificate(...).get_credential()`` (the token
endpoint is the file's ``token_uri``), and a ``Certificate`` may be passed as it is; the
result is narrowed to the FCM scope (firebase-admin asks for Firestore, Storage and
more). Any other google-auth credentials object is used as given (scoped only if it
requires scopes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any, TypeAlias

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import requests
from firebase_admin import credentials as firebase_credentials  # type: ignore[import-untyped]

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"

#: a service-account file path or its dict, a firebase-admin ``Certificate``, or google-auth credentials
#: (firebase-admin has no type information: its Certificate is checked at run time)
ServiceAccount: TypeAlias = str | Path | Mapping[str, Any] | google.auth.credentials.Credentials | Any


def load_credentials(source: ServiceAccount) -> google.auth.credentials.Credentials:
    """google-auth credentials with the FCM scope, from any accepted source (``ValueError``
    when a service account is not one; ``OSError`` when its file cannot be read)."""
    if isinstance(source, google.auth.credentials.Credentials):
        given: google.auth.credentials.Credentials = (
            google.auth.credentials.with_scopes_if_required(source, [SCOPE]))  # type: ignore[no-untyped-call]
        return given
    if isinstance(source, Mapping):
        source = firebase_credentials.Certificate(dict(source))
    elif isinstance(source, str | Path):
        source = firebase_credentials.Certificate(str(source))
    if not isinstance(source, firebase_credentials.Certificate):
        raise TypeError("service_account must be a file path, its dict, a firebase_admin "
                        f"credentials.Certificate or google-auth credentials, not {type(source).__name__}")
    loaded = source.get_credential()
    scoped: google.auth.credentials.Credentials = loaded.with_scopes([SCOPE])
    return scoped


class _TimedRequest:
    """google-auth's requests transport with a timeout on every call (its default is 120 s)."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self._inner = google.auth.transport.requests.Request(session)
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return self._inner(*args, **kwargs)


class AccessToken:
    """A bearer token for FCM that is always fresh when :meth:`get` returns it."""

    def __init__(self, credentials: google.auth.credentials.Credentials, *, margin: float = 300.0,
                 timeout: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self._credentials = credentials
        self._margin = margin
        self._clock = clock
        self._session = requests.Session()
        self._request = _TimedRequest(self._session, timeout)
        self._lock = asyncio.Lock()
        self._rejected: str | None = None

    async def get(self) -> str:
        """The current token, refreshed in a worker thread first when it is stale."""
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            token = self._fresh()
            if token is None:
                await asyncio.to_thread(self.refresh_blocking)
                # just refreshed: used even when it lives shorter than the margin
                token = self._credentials.token
        if not token:
            raise google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
                "the token endpoint gave no access token")
        return token

    def invalidate(self, token: str) -> None:
        """FCM refused ``token`` (401): the next :meth:`get` refreshes unless that happened already."""
        self._rejected = token

    def refresh_blocking(self) -> None:
        """The blocking refresh; only ever called in a worker thread."""
        self._credentials.refresh(self._request)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._session.close()

    def _fresh(self) -> str | None:
        token: str | None = self._credentials.token
        if not token or token == self._rejected:
            return None
        expiry = self._credentials.expiry  # naive UTC
        if expiry is not None and expiry.replace(tzinfo=UTC).timestamp() - self._clock() < self._margin:
            return None
        return token
