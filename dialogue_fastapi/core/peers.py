"""The client address of an HTTP request or WebSocket, in one place.

Behind a proxy it is the address uvicorn's ``--proxy-headers`` /
``--forwarded-allow-ips`` made of ``X-Forwarded-For`` (docs/deployment.md).
"""

from __future__ import annotations

from starlette.requests import HTTPConnection


def client_ip(conn: HTTPConnection) -> str | None:
    """The peer's IP address, or None when the server does not know it."""
    return conn.client.host if conn.client else None
