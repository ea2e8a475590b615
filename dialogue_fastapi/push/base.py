"""The push seam: what a notification is, where it goes, and what a sender answers.

A :class:`PushSender` delivers one :class:`Notification` to one :class:`Device`
of its kind (``webpush``, ``fcm``, ``apns``) and answers with a
:class:`SendResult`: delivered, gone (the registration is dead and is pruned),
retry (after ``retry_after`` seconds, e.g. 429 or 5xx) or failed (a permanent
error that is counted, not retried). Senders never raise for an answer of the
push service; they raise only for bugs. The dispatcher owns queues, retries,
rate limits and pruning, so a sender is one request and one classification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

PushKind = Literal["webpush", "fcm", "apns"]
Urgency = Literal["very-low", "low", "normal", "high"]

#: seconds a push service keeps an undelivered notification by default (4 weeks is the
#: Web Push maximum most services accept; a day reaches a phone that was off overnight)
DEFAULT_TTL = 24 * 3600


@dataclass(frozen=True, slots=True)
class Notification:
    """What the user sees; every field is optional but ``title``.

    ``tag`` is the collapse key: a later notification with the same tag replaces an
    earlier one on the device (Web Push ``Topic``, FCM ``collapse_key``/``tag``, APNs
    ``apns-collapse-id``). ``data`` travels to the app (the service worker, the FCM
    message's ``data``, the APNs payload beside ``aps``).
    """

    title: str
    body: str = ""
    url: str | None = None
    icon: str | None = None
    tag: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ttl: int = DEFAULT_TTL
    urgency: Urgency = "normal"

    def payload(self) -> dict[str, Any]:
        """The JSON object a service worker or an app receives (None fields left out)."""
        body: dict[str, Any] = {"title": self.title, "body": self.body}
        for name in ("url", "icon", "tag"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.data:
            body["data"] = self.data
        return body


@dataclass(frozen=True, slots=True)
class Device:
    """One registration as a sender sees it.

    ``target`` is the Web Push endpoint URL or the FCM/APNs token. ``keys`` holds
    ``p256dh`` and ``auth`` (Web Push, base64url) or ``topic`` and ``sandbox``
    (APNs); FCM needs none.
    """

    id: str
    user_id: str
    kind: PushKind
    target: str
    keys: dict[str, Any] = field(default_factory=dict)


class Outcome(StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"  # the registration is dead: prune it (Web Push 404/410, FCM UNREGISTERED, APNs 410)
    RETRY = "retry"  # try again later (429, 5xx, a network error)
    FAILED = "failed"  # permanent for this notification (400, 413, bad credentials): count, drop


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    status: int | None = None  # the push service's HTTP status (None: no answer)
    reason: str = ""  # the service's error code or message, for logs and metrics
    retry_after: float | None = None  # seconds, from Retry-After when the service sent one

    @classmethod
    def delivered(cls, status: int) -> SendResult:
        return cls(Outcome.DELIVERED, status)


class PushSender(Protocol):
    """Delivers notifications of one kind; one instance per node, shared by all sends."""

    kind: PushKind

    async def send(self, device: Device, notification: Notification) -> SendResult:
        """One attempt; the answer classified, never an exception for a service's answer."""
        ...

    async def close(self) -> None:
        """Release connections (HTTP clients, HTTP/2 sessions)."""
        ...
