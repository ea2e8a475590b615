"""Reconnect policy: close codes, backoff, and the handshake's URL and headers."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

NORMAL = 1000
ABNORMAL = 1006
ORIGIN_REFUSED = 1008
UNAUTHORIZED = 4001
FORBIDDEN = 4003
APP_DISCONNECT = 4004
RATE_LIMITED = 4008
PROTOCOL_VIOLATION = 4400

# Closes after which a new connection would be refused the same way, or was not wanted.
NO_RECONNECT = frozenset(
    {NORMAL, ORIGIN_REFUSED, UNAUTHORIZED, FORBIDDEN, APP_DISCONNECT, PROTOCOL_VIOLATION}
)

# Protocol error codes reported when the very first connection is refused.
REFUSAL_CODES = {
    UNAUTHORIZED: "UNAUTHORIZED",
    FORBIDDEN: "FORBIDDEN",
    ORIGIN_REFUSED: "FORBIDDEN",
    APP_DISCONNECT: "FORBIDDEN",
    PROTOCOL_VIOLATION: "BAD_REQUEST",
}


def should_reconnect(code: int, advice: bool | None) -> bool:
    """Whether to reconnect after a close with ``code``.

    ``advice`` is the ``reconnect`` flag of the server's ``disconnect`` frame,
    when one preceded the close; the server knows why it closed, so it wins.
    """
    if advice is not None:
        return advice
    return code not in NO_RECONNECT


def is_permanent_http_refusal(status: int) -> bool:
    """An HTTP status on the upgrade that retrying will not change."""
    return status in (401, 403)


class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, initial * 2**n))."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = max(0.0, initial)
        self.cap = max(self.initial, cap)
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; grows the ceiling for the one after."""
        ceiling = min(self.cap, self.initial * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return random.uniform(0.0, ceiling)

    def penalize(self) -> None:
        """Jump to the cap's ceiling (after 4008: the server asked us to slow down)."""
        while self.initial * (2 ** min(self.attempt, 32)) < self.cap and self.attempt < 32:
            self.attempt += 1

    def reset(self) -> None:
        """Start over (after a successful connect)."""
        self.attempt = 0


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``token=<token>`` in its query (replacing any previous one).

    Only with ``token_in_query=True``: a URL's query reaches access logs and proxies.
    """
    if token is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def handshake_headers(headers: dict[str, str] | None, token: str | None) -> dict[str, str]:
    """The extra upgrade headers: the user's, plus ``Authorization: Bearer`` for a token."""
    result = dict(headers or {})
    if token is not None:
        for key in [k for k in result if k.lower() == "authorization"]:
            del result[key]
        result["Authorization"] = f"Bearer {token}"
    return result
