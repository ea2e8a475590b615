"""The browser ``Origin`` check of the WebSocket handshake."""

from __future__ import annotations

from urllib.parse import urlsplit


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Same-origin, listed, or no Origin at all (non-browser clients)."""
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    netloc = urlsplit(origin).netloc
    return bool(host) and netloc.lower() == (host or "").lower()
