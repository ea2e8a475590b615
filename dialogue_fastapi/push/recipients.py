"""Who gets a room event's notification: its members' and subscribers' devices, minus the sender,
and (``when="offline"``) minus every user with a live connection in the room anywhere in the
cluster (broker presence).

Members are a family instance's ``members`` parameters (``"dm:{a}:{b}"`` with
``members=["a", "b"]`` -> the two users); subscribers are the users whose registrations
list the room (``rooms=[...]`` when registering). The offline check runs when the event is
published (nothing is queued for a room whose candidates are all online) and again when the
notification is due: a user who joined meanwhile read the event live or from history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, Protocol

from ..brokers.base import Presence
from ..core.config import RoomConfig
from .registrations import PushRegistrations, Registration

When = Literal["offline", "always"]


class Room(Protocol):
    """What push reads of a room (``rooms.registry.Room`` is one; push sits below ``rooms``)."""

    @property
    def id(self) -> str: ...
    @property
    def config(self) -> RoomConfig: ...
    @property
    def params(self) -> Mapping[str, str]: ...


class RoomLookup(Protocol):
    """Finds a room by id (``rooms.registry.RoomRegistry`` is one)."""

    def find(self, room_id: str) -> Room | None: ...


def pushes(room: Room) -> bool:
    """Whether the room sends push notifications (``"webpush"`` in its channels)."""
    return "webpush" in room.config.channels


def members(room: Room) -> list[str]:
    """The users a family instance names (its ``members`` parameters, ``a`` or ``{a}``)."""
    names = (m.strip("{}") for m in room.config.members or ())
    return [room.params[name] for name in names if room.params.get(name)]


async def online(presence: Presence, room_id: str) -> set[str]:
    """Users with a live connection in the room, on any node."""
    return {entry.user_id for entry in await presence.members(room_id)}


async def devices(room: Room, sender: str, registrations: PushRegistrations,
                  presence: Presence, when: When) -> list[Registration]:
    """The registrations a room event goes to, as things stand now."""
    found = await registrations.for_users(members(room)) if room.config.members else []
    found += await registrations.for_room(room.id)
    chosen = _unique(r for r in found if r.user_id != sender)
    if when == "offline" and chosen:
        here = await online(presence, room.id)
        chosen = [r for r in chosen if r.user_id not in here]
    return chosen


def _unique(found: Iterable[Registration]) -> list[Registration]:
    by_id: dict[str, Registration] = {}
    for registration in found:
        by_id.setdefault(registration.id, registration)
    return list(by_id.values())

