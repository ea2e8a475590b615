"""Where push registrations live: the ``PushRegistrations`` seam and its in-memory form.

A registration is one device of one user: a Web Push subscription, an FCM
token or an APNs token. ``(kind, target)`` is unique: registering the same
endpoint or token again updates it (its keys, rooms and owner: a browser that
another user signs in on belongs to that user from then on). Each user holds
at most ``limit`` registrations. The SQL form is ``stores/sql_push.py``; the
memory form here serves an app without persistence (registrations are lost on
restart, as everything else of that app).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..core.errors import Forbidden
from .base import Device, PushKind


@dataclass(frozen=True, slots=True)
class Registration:
    """One device of one user, as stored."""

    id: str
    user_id: str
    kind: PushKind
    target: str  # the Web Push endpoint, or the FCM/APNs token
    keys: dict[str, Any] = field(default_factory=dict)  # p256dh/auth; topic/sandbox
    rooms: tuple[str, ...] = ()  # rooms the device asked notifications of (besides membership)
    created_at: float = 0.0  # seconds since the epoch
    last_success_at: float | None = None
    failures: int = 0  # consecutive failed sends (reset by a success)

    def device(self) -> Device:
        return Device(self.id, self.user_id, self.kind, self.target, self.keys)

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /push/subscriptions`` shows: never the keys."""
        return {"id": self.id, "kind": self.kind, "target": _shown(self.kind, self.target),
                "rooms": list(self.rooms), "created_at": self.created_at,
                "last_success_at": self.last_success_at, "failures": self.failures}


def _shown(kind: str, target: str) -> str:
    """An endpoint as is (it names the push service); a token shortened (a secret of sorts)."""
    return target if kind == "webpush" else target[:8] + "…" + target[-4:]


def new_id() -> str:
    return "ps_" + secrets.token_urlsafe(12)


def too_many(limit: int) -> Forbidden:
    return Forbidden(f"you already have {limit} push registrations; the limit is {limit} "
                     "(delete one first)", limit=limit)


class PushRegistrations(Protocol):
    """The store of registrations (``stores/sql_push.py``, or :class:`MemoryRegistrations`)."""

    async def save(self, user_id: str, kind: PushKind, target: str, keys: dict[str, Any],
                   rooms: Collection[str], limit: int) -> tuple[Registration, bool]:
        """Insert or update by ``(kind, target)``: (the registration, True if it is new).
        A new one past the user's ``limit`` raises ``Forbidden``."""
        ...

    async def of_user(self, user_id: str) -> list[Registration]:
        """The user's registrations, oldest first."""
        ...

    async def delete(self, user_id: str, registration_id: str) -> bool:
        """Delete one of the user's own; False if it does not exist or is someone else's."""
        ...

    async def for_users(self, user_ids: Collection[str]) -> list[Registration]:
        """Every registration of these users."""
        ...

    async def for_room(self, room: str) -> list[Registration]:
        """Every registration that asked for ``room``'s notifications."""
        ...

    async def sent(self, registration_id: str, ok: bool) -> None:
        """Record a send: a success resets the failures, a failure counts one more."""
        ...

    async def prune(self, registration_id: str) -> None:
        """Remove a dead registration (the push service said it is gone)."""
        ...


class MemoryRegistrations:
    """:class:`PushRegistrations` in a dict (no persistence)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Registration] = {}
        self._by_target: dict[tuple[str, str], str] = {}

    async def save(self, user_id: str, kind: PushKind, target: str, keys: dict[str, Any],
                   rooms: Collection[str], limit: int) -> tuple[Registration, bool]:
        known = self._by_target.get((kind, target))
        if known is not None:
            found = replace(self._by_id[known], user_id=user_id, keys=dict(keys),
                            rooms=tuple(dict.fromkeys(rooms)))
            self._by_id[known] = found
            return found, False
        if sum(1 for r in self._by_id.values() if r.user_id == user_id) >= limit:
            raise too_many(limit)
        created = Registration(new_id(), user_id, kind, target, dict(keys),
                               tuple(dict.fromkeys(rooms)), time.time())
        self._by_id[created.id] = created
        self._by_target[(kind, target)] = created.id
        return created, True

    async def of_user(self, user_id: str) -> list[Registration]:
        return sorted((r for r in self._by_id.values() if r.user_id == user_id),
                      key=lambda r: r.created_at)

    async def delete(self, user_id: str, registration_id: str) -> bool:
        found = self._by_id.get(registration_id)
        if found is None or found.user_id != user_id:
            return False
        await self.prune(registration_id)
        return True

    async def for_users(self, user_ids: Collection[str]) -> list[Registration]:
        wanted = set(user_ids)
        return [r for r in self._by_id.values() if r.user_id in wanted]

    async def for_room(self, room: str) -> list[Registration]:
        return [r for r in self._by_id.values() if room in r.rooms]

    async def sent(self, registration_id: str, ok: bool) -> None:
        found = self._by_id.get(registration_id)
        if found is not None:
            self._by_id[registration_id] = (
                replace(found, last_success_at=time.time(), failures=0) if ok
                else replace(found, failures=found.failures + 1))

    async def prune(self, registration_id: str) -> None:
        found = self._by_id.pop(registration_id, None)
        if found is not None:
            self._by_target.pop((found.kind, found.target), None)
