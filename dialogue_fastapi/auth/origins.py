"""The browser ``Origin`` check of ``/ws`` and ``/sse``.

An origin is a scheme, a host and a port. Same-origin means the ``Origin``
header's three equal the request's own: its scheme from the ASGI scope (``ws``
counts as ``http``, ``wss`` as ``https``; behind a TLS-terminating proxy
uvicorn takes it from ``X-Forwarded-Proto`` when ``--forwarded-allow-ips``
trusts the proxy), its host and port from the ``Host`` header, default ports
(80, 443) filled in. Entries of ``allowed_origins`` are compared the same way;
``"*"`` allows any origin. A request without ``Origin`` (servers, scripts,
native apps) is not a browser's cross-site request and passes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

Origin = tuple[str, str, int]
DEFAULT_PORTS = {"http": 80, "https": 443}
WEB_SCHEMES = {"ws": "http", "wss": "https"}


def parse_origin(text: str, scheme: str | None = None) -> Origin | None:
    """``(scheme, host, port)`` of ``scheme://host[:port]``; ``scheme`` given: of a bare
    ``host[:port]`` (a ``Host`` header). None when it cannot be read (``null`` included)."""
    try:
        parts = urlsplit(f"{scheme}://{text}" if scheme is not None else text.strip())
        port = parts.port
    except ValueError:
        return None
    found = WEB_SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    host = (parts.hostname or "").lower()
    if not host or not found:
        return None
    if port is None:
        port = DEFAULT_PORTS.get(found, -1)
    return found, host, port


def origin_allowed(origin: str | None, scheme: str, host: str | None, allowed: list[str]) -> bool:
    """Same-origin with ``scheme://host`` (the request's), listed, or no Origin at all."""
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    theirs = parse_origin(origin)
    if theirs is None:
        return False
    own_scheme = WEB_SCHEMES.get(scheme.lower(), scheme.lower())
    if host and theirs == parse_origin(host, own_scheme):
        return True
    return any(theirs == parse_origin(entry) for entry in allowed)


def origin_refusal(conn: HTTPConnection, allowed: list[str]) -> str | None:
    """Why ``conn``'s ``Origin`` is refused, or None when it may connect."""
    origin = conn.headers.get("origin")
    if origin_allowed(origin, conn.scope.get("scheme", "http"), conn.headers.get("host"), allowed):
        return None
    return f"origin {origin} is not allowed; add it to allowed_origins"
