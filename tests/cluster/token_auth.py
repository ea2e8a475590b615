"""How the node apps of the cluster tests tell users apart: ``?token=<user>`` or
``Authorization: Bearer <user>`` (the token is the user id)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from dialogue_fastapi import Identity


def authenticate(conn: HTTPConnection) -> Identity | None:
    token = conn.query_params.get("token")
    header = conn.headers.get("authorization", "")
    if token is None and header.startswith("Bearer "):
        token = header.removeprefix("Bearer ")
    return None if not token else Identity(token)
