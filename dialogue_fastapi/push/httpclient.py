"""HTTP plumbing the push senders share: one lazily created httpx client, and Retry-After.

Each sender owns one :class:`httpx.AsyncClient`, created on its first send (inside the
running event loop) and shared by all sends. It never follows redirects: the
registration's SSRF guard checked the registered URL, not where a redirect would lead,
so a 3xx is answered as FAILED. ``verify`` is passed through (a CA bundle path or an
:class:`ssl.SSLContext`) for private push services and tests; with the default
``True`` httpx honours ``SSL_CERT_FILE``.

Keep ``max_connections`` small (the senders default to 16, about the dispatcher's
concurrency): httpcore checks every pooled connection (is it idle, has it expired: a
socket poll each) whenever it assigns a request, so its cost per request grows with
the pool (``benchmarks/push.py``, one Web Push send on HTTP/1.1: about 1.1 ms of CPU
with a pool of 4, 2.4 ms with 16, 10 ms with 64). Over HTTP/2 one connection per
push service carries every send (the Web Push sender asks for it; 1.6 ms per send).
httpcore also imports ``sniffio`` for every lock it makes and a missing module is
looked up on disk each time, so the ``push`` extra installs it.
"""

from __future__ import annotations

import email.utils
import math
import ssl
import time
from datetime import UTC

import httpx

from .base import Outcome, SendResult

Verify = ssl.SSLContext | str | bool


class ClientHolder:
    """An httpx client made on first use and closed by :meth:`close`."""

    def __init__(self, *, timeout: float, verify: Verify, max_connections: int,
                 http2: bool = False) -> None:
        self._timeout = timeout
        self._verify = verify
        self._max_connections = max_connections
        self._http2 = http2
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), verify=self._verify, http2=self._http2,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=self._max_connections,
                                    max_keepalive_connections=self._max_connections),
            )
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def network_error(exc: Exception) -> SendResult:
    """A send that got no answer (connection refused or dropped, timeout): retry later."""
    detail = str(exc)
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return SendResult(Outcome.RETRY, None, reason)


def body_text(response: httpx.Response, limit: int = 200) -> str:
    """The start of an error answer's body, for a reason string."""
    return response.text[:limit].strip()
