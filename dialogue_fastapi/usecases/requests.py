"""Typed requests of the use cases: what each operation takes, whatever the transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..core.types import Position

EventSelection = list[str] | Literal["*"] | None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.3 us a field, per publish
class PublishRequest:
    room: str
    event: str
    data: Any = None
    meta: dict[str, Any] | None = None
    idempotency_key: str | None = None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.3 us a field, per publish
class HistoryRequest:
    room: str
    event: str | None = None
    limit: int = 50
    before: int | None = None
    after: int | None = None
    sender: str | None = None
    since_ts: int | None = None
    until_ts: int | None = None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.3 us a field, per publish
class JoinRequest:
    room: str
    subscriptions: EventSelection = None
    since: Position | None = None
    history: int | None = None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.3 us a field, per publish
class CreateRoomRequest:
    """A client's room: only names of events the application defined."""

    room: str
    name: str
    description: str | None = None
    max_size: int | None = None
    events: list[str] | None = None
    presence_events: bool = False
    sync_history_on_join: int = 0


@dataclass(frozen=True, slots=True)
class PushRegistrationRequest:
    """A device to notify: ``target`` is the Web Push endpoint or the FCM/APNs token; ``keys``
    are ``p256dh``/``auth`` (Web Push) or ``topic``/``sandbox`` (APNs)."""

    kind: Literal["webpush", "fcm", "apns"]
    target: str
    keys: dict[str, Any]
    rooms: list[str]
