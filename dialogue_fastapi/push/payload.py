"""Payload size and collapse-key rules shared by the push senders.

**Size.** A push service refuses a payload over its limit: Web Push carries one
4,096-byte aes128gcm record (3,993 bytes of plaintext) and Firefox for Android refuses
more than 3,070; APNs takes 4,096 bytes. The payload is compact UTF-8 JSON, and when it
is over the sender's limit:

1. ``body`` is cut to the longest prefix that fits and ends with an ellipsis (``…``);
2. if even the ellipsis alone does not fit, ``data`` is dropped and step 1 runs again
   on the whole body;
3. if that still does not fit (a huge title, url or icon), the notification is refused:
   the sender answers ``FAILED`` with reason ``"payload too large"``.

Nothing else (title, url, icon, tag) is ever changed.

**Collapse keys.** The tag becomes a Web Push ``Topic`` (at most 32 characters of the
URL-safe base64 alphabet) or an APNs ``apns-collapse-id`` (at most 64 bytes, sent as a
header, so printable ASCII): a tag that already satisfies the rule is used as it is,
any other tag is replaced by the URL-safe base64 of its SHA-256 (cut to 32 characters
for a Topic). Equal tags give equal keys, so collapsing still works.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import orjson

from .base import Outcome, SendResult

#: the reason of a notification that cannot be made to fit
PAYLOAD_TOO_LARGE = "payload too large"
ELLIPSIS = "…"

#: ``build(body, with_data)`` -> the encoded payload
Build = Callable[[str, bool], bytes]

_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_COLLAPSE_ID = re.compile(r"[\x20-\x7e]{1,64}")


def fitted(build: Build, body: str, limit: int) -> bytes | SendResult:
    """The payload by :func:`fit`, or the FAILED answer of one that cannot be sent
    (not JSON, or too large even trimmed): the senders' one check."""
    try:
        payload = fit(build, body, limit)
    except orjson.JSONEncodeError as exc:
        return SendResult(Outcome.FAILED, None, f"payload is not JSON: {exc}")
    return SendResult(Outcome.FAILED, None, PAYLOAD_TOO_LARGE) if payload is None else payload


def fit(build: Build, body: str, limit: int) -> bytes | None:
    """The payload under ``limit`` bytes by the rule above, or None when it cannot fit."""
    for with_data in (True, False):
        encoded = build(body, with_data)
        if len(encoded) <= limit:
            return encoded
        trimmed = _trim(build, body, with_data, limit)
        if trimmed is not None:
            return trimmed
    return None


def _trim(build: Build, body: str, with_data: bool, limit: int) -> bytes | None:
    """The longest ``body[:k] + "…"`` that fits (the size grows with k: a binary search)."""

    def attempt(k: int) -> bytes:
        return build(body[:k].rstrip() + ELLIPSIS, with_data)

    best = attempt(0)
    if len(best) > limit:
        return None
    low, high = 0, len(body) - 1  # invariant: attempt(low) fits
    while low < high:
        middle = (low + high + 1) // 2
        candidate = attempt(middle)
        if len(candidate) <= limit:
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


def _digest(tag: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(tag.encode()).digest()).rstrip(b"=").decode()


def webpush_topic(tag: str) -> str:
    """A valid Web Push ``Topic`` for ``tag`` (the tag itself when it is one)."""
    return tag if _TOPIC.fullmatch(tag) else _digest(tag)[:32]


def apns_collapse_id(tag: str) -> str:
    """A valid ``apns-collapse-id`` for ``tag`` (the tag itself when it is one)."""
    return tag if _COLLAPSE_ID.fullmatch(tag) else _digest(tag)
