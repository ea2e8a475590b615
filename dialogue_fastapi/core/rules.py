"""Input rules, enforced once for every transport (WebSocket, REST, SSE, the facade).

Every string a client sends may end up in a database, a log line or an SSE
frame, so the rules are about what those can hold: no U+0000 anywhere
(PostgreSQL's text and JSONB refuse it), no control characters in names that
become SSE fields or look-alike ids, integers that fit the store's int64
columns, and JSON no deeper than ``max_json_depth`` (data and meta together)
and no larger than ``max_message_size``.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

import orjson

from .errors import BadRequest, EventNotAllowed, PayloadTooLarge

#: room ids: letters, digits and ``_.:@-``, matched in full (no trailing newline)
ROOM_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.:@\-]+$")
#: event names: 1..128 characters, none a control character (C0, DEL, C1) nor a line separator
EVENT_NAME_PATTERN: Final = re.compile(r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,128}$")
#: the largest integer a stored seq or ``ts`` (ms) can be: PostgreSQL's and SQLite's int64
MAX_INT64: Final = 2**63 - 1
_CONTAINERS: Final = (dict, list)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NUL_ESCAPE: Final = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def valid_room_id(room_id: str) -> bool:
    return ROOM_ID_PATTERN.fullmatch(room_id) is not None


def check_room_id(room_id: object, max_length: int) -> str:
    """A room id a client names; BAD_REQUEST for anything outside the pattern."""
    if not isinstance(room_id, str) or not room_id:
        raise BadRequest("'room' must be a non-empty string")
    if len(room_id) > max_length:
        raise BadRequest(f"room id is {len(room_id)} characters; the limit is {max_length}")
    if not valid_room_id(room_id):
        raise BadRequest("a room id may only use letters, digits and _.:@- (no spaces or "
                         "control characters)")
    return room_id


@functools.lru_cache(maxsize=4096)
def _valid_event_name(event: str) -> bool:
    return EVENT_NAME_PATTERN.fullmatch(event) is not None


def check_event_name(event: object) -> str:
    """An event name: EVENT_NOT_ALLOWED when it could never be an event."""
    if not isinstance(event, str) or not _valid_event_name(event):
        shown = repr(event)[:60]
        raise EventNotAllowed(f"invalid event name {shown}: 1..128 characters, no control "
                              "characters or line breaks")
    return event


def check_text(value: str | None, what: str, max_length: int = 256) -> str | None:
    """A short client string stored as is (idempotency key, sender filter, user id)."""
    if value is None:
        return None
    if len(value) > max_length:
        raise BadRequest(f"{what} is {len(value)} characters; the limit is {max_length}")
    if _CONTROL.search(value) is not None:
        raise BadRequest(f"{what} may not contain control characters (U+0000..U+001F, "
                         "U+007F..U+009F)")
    return value


def json_depth(value: Any, limit: int | None = None) -> int:
    """Nesting depth of parsed JSON (a scalar is 1, ``{"a": 1}`` is 2), level by level and
    without recursion; stops counting once it passes ``limit``."""
    values = value.values() if isinstance(value, dict) else value
    if not isinstance(value, _CONTAINERS) or not values:
        return 1
    for item in values:  # the common case, one level of scalars, without building lists
        if isinstance(item, _CONTAINERS):
            break
    else:
        return 2
    depth, level = 1, [value]
    while True:
        if limit is not None and depth > limit:
            return depth
        children = [v for item in level for v in (item.values() if isinstance(item, dict) else item)]
        if not children:
            return depth
        depth += 1
        level = [v for v in children if isinstance(v, _CONTAINERS)]
        if not level:
            return depth


def too_deep(value: Any, encoded: str | bytes, limit: int) -> bool:
    """Whether parsed JSON nests deeper than ``limit``. Its text is read first: with fewer
    brackets than ``limit`` it cannot be, and a chat message never has that many."""
    brackets = (encoded.count("[") + encoded.count("{") if isinstance(encoded, str)
                else encoded.count(b"[") + encoded.count(b"{"))
    return brackets >= limit and json_depth(value, limit) > limit


def check_payload(data: Any, meta: dict[str, Any] | None, *, max_size: int, max_depth: int) -> int:
    """``data`` and ``meta`` of a publish: not nested deeper than ``max_depth``, together no
    larger than ``max_size`` bytes, no U+0000 in any string or key. Returns the size."""
    raw = _encoded(data, "data", max_depth)
    raw_meta = _encoded(meta, "meta", max_depth) if meta else b""
    size = len(raw) + len(raw_meta)
    if size > max_size:
        raise PayloadTooLarge(f"event data and meta are {size} bytes; the limit is {max_size}")
    return size


def _encoded(value: Any, what: str, max_depth: int) -> bytes:
    """``value`` as JSON, after the depth and NUL rules. The depth is walked only when the
    encoded text has enough brackets to be too deep (a chat message never has)."""
    try:
        raw = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:  # orjson stops at 255 levels
        if json_depth(value, max_depth) > max_depth:
            raise BadRequest(f"event {what} is nested deeper than {max_depth} levels") from None
        raise BadRequest(f"event {what} cannot be encoded as JSON: {exc}") from None
    if too_deep(value, raw, max_depth):
        raise BadRequest(f"event {what} is nested deeper than {max_depth} levels")
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise BadRequest(f"event {what} contains U+0000 (NUL), which cannot be stored")
    return raw


def check_int64(value: int | None, what: str) -> int | None:
    """Seq and ts filters: 0..2**63-1, what the store's columns hold."""
    if value is not None and not 0 <= value <= MAX_INT64:
        raise BadRequest(f"{what} must be between 0 and {MAX_INT64}")
    return value
