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

from ..core.notifications import DEFAULT_TTL, Notification, Urgency

__all__ = ["DEFAULT_TTL", "Device", "Notification", "Outcome", "PushKind", "PushSender", "SendResult",
           "Urgency"]

PushKind = Literal["webpush", "fcm", "apns"]


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
