"""HTTP plumbing the push senders share: one lazily created HTTP client, and Retry-After.

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
push service carries every send (the Web Push sender asks for it with
``transport="httpx"``; 1.6-1.9 ms per send). httpcore also imports ``sniffio`` for
every lock it makes and a missing module is looked up on disk each time, so the
``push`` extra installs it.

:class:`SessionHolder` is the same for an :class:`aiohttp.ClientSession` (the Web Push
sender's default transport, ~0.34 ms of CPU per request in the same benchmark, see
:mod:`.webpush`): made on the first send inside the
running loop, a :class:`aiohttp.TCPConnector` limited to ``max_connections`` with
keep-alive, ``ssl`` from ``verify`` as httpx reads it (``True``: ``SSL_CERT_FILE`` or
``SSL_CERT_DIR`` when set, else certifi's bundle; ``False``: no verification; a path: a
CA file or directory; an :class:`ssl.SSLContext` as is), a total timeout per request,
no cookie jar. Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``: what httpx
honours by default) are read once when the session is made; aiohttp's own
``trust_env`` would read them, and ``~/.netrc``, in a worker thread for every request.
"""

from __future__ import annotations

import email.utils
import math
import os
import ssl
import time
import urllib.parse
import urllib.request
from datetime import UTC
from typing import TYPE_CHECKING, Any

import httpx

from .base import Outcome, SendResult

if TYPE_CHECKING:
    import aiohttp

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


class SessionHolder:
    """An aiohttp session made on first use (in the running loop) and closed by :meth:`close`."""

    def __init__(self, *, timeout: float, verify: Verify, max_connections: int,
                 keepalive: float = 15.0) -> None:
        self._timeout = timeout
        self._verify = verify
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, Any] = {}

    def get(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp
            from aiohttp.helpers import proxies_from_env

            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0,
                                             keepalive_timeout=self._keepalive,
                                             ssl=ssl_option(self._verify))
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout),
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
            self._proxies = {k: v for k, v in proxies_from_env().items() if k in ("http", "https")}
        return self._session

    def proxy(self, url: str) -> dict[str, Any]:
        """``proxy``/``proxy_auth`` arguments for a POST to ``url`` (none without proxy settings)."""
        if not self._proxies:
            return {}
        parts = urllib.parse.urlsplit(url)
        info = self._proxies.get(parts.scheme.lower())
        if info is None or urllib.request.proxy_bypass(parts.hostname or ""):
            return {}
        return {"proxy": info.proxy, "proxy_auth": info.proxy_auth}

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def ssl_option(verify: Verify) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl`` argument for ``verify``, the CA bundle chosen as httpx chooses it."""
    if verify is False:
        return False
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        if os.environ.get("SSL_CERT_FILE"):
            return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        if os.environ.get("SSL_CERT_DIR"):
            return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
        try:
            import certifi
        except ImportError:  # pragma: no cover - httpx depends on certifi
            return ssl.create_default_context()
        return ssl.create_default_context(cafile=certifi.where())
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


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
