"""The SSE cursor: every room's (epoch, seq) of a stream in one URL-safe string.

It is the ``id:`` of each SSE message, so the browser's ``EventSource`` sends
it back as ``Last-Event-ID`` when it reconnects; the server resumes each room
from its position exactly as ``join`` with ``since`` does. The format is
base64url (no padding) of the JSON list ``[[room, epoch, seq], ...]``,
prefixed ``c1.``; clients treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from ..core.errors import BadRequest
from ..core.types import Position

PREFIX = "c1."
MAX_LENGTH = 8192


def encode_cursor(positions: dict[str, Position]) -> str:
    raw = orjson.dumps([[room, p.epoch, p.seq] for room, p in positions.items()])
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(value: str) -> dict[str, Position]:
    """The positions in a cursor; ``BAD_REQUEST`` when it is not one of ours."""
    if len(value) > MAX_LENGTH or not value.startswith(PREFIX):
        raise BadRequest("Last-Event-ID is not a cursor of this server; reconnect without it")
    body = value[len(PREFIX):]
    try:
        items = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        found = {str(room): Position(int(seq), str(epoch)) for room, epoch, seq in items
                 if isinstance(room, str) and isinstance(epoch, str) and isinstance(seq, int)}
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("Last-Event-ID is not a valid cursor; reconnect without it") from None
    if len(found) != len(items) or any(p.seq < 0 for p in found.values()):
        raise BadRequest("Last-Event-ID is not a valid cursor; reconnect without it")
    return found
