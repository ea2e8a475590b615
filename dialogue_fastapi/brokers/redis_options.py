"""Options of the Redis broker carried in its URL's query string.

``redis://host:6379/0?prefix=myapp:&node_ttl=10``: ``prefix`` namespaces every
key and channel (several applications or environments on one Redis), and
``node_ttl`` is the seconds after which a silent node counts as dead. Other
query parameters are redis-py's own and stay in the URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

OWN = {"prefix": str, "node_ttl": float}


def split_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without our options, and our options converted to their types."""
    parts = urlsplit(url)
    kept, ours = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in OWN:
            try:
                ours[key] = OWN[key](value)
            except ValueError:
                raise ValueError(f"broker URL option {key}={value!r} is not a valid "
                                 f"{OWN[key].__name__}") from None
        else:
            kept.append((key, value))
    if "node_ttl" in ours and ours["node_ttl"] <= 0:
        raise ValueError("broker URL option node_ttl must be a positive number of seconds")
    if not ours:
        return url, ours
    base = url.split("?", 1)[0]  # not urlunsplit: it would turn unix:///path into unix:/path
    return base + (f"?{urlencode(kept)}" if kept else ""), ours
