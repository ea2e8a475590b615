"""Push registration: a user's devices, validated once for every front end (REST, the facade).

Every registration is the caller's own: listing shows only theirs, deleting
another user's id answers ``NOT_FOUND`` as if it did not exist. A registration
may name rooms to be notified of (besides the rooms the user is a member of);
each must exist, send push (``"webpush"`` in its ``channels``) and be visible
to the caller (``before_join``), so a device cannot subscribe to a room its
user may not read.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..core.errors import BadRequest, NotFound
from ..core.rules import check_room_id
from ..push.preferences import MAX_MUTED_ROOMS, Preferences, QuietHours
from ..push.registrations import Registration
from ..push.validation import (
    InvalidRegistration,
    check_apns,
    check_fcm_token,
    check_webpush_keys,
)
from ..runtime import Runtime
from .access import Access
from .caller import Caller
from .requests import PushRegistrationRequest

MAX_ROOMS_PER_REGISTRATION = 50
_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class PushRegistrationUseCases:
    """Register, list and delete the caller's devices; read and set their push preferences."""

    def __init__(self, rt: Runtime, access: Access) -> None:
        self._rt = rt
        self._access = access

    def _service(self) -> Any:
        push = self._rt.push
        if push is None:
            raise BadRequest("push notifications are not configured on this server")
        return push

    def vapid_public_key(self) -> str:
        """The application server key browsers subscribe with (base64url)."""
        key: str | None = self._service().vapid_public_key
        if key is None:
            raise BadRequest("Web Push is not configured on this server (no VAPID key)")
        return key

    async def register(self, caller: Caller, request: PushRegistrationRequest) -> tuple[Registration, bool]:
        """Validate, check the rooms, then insert or update: (registration, created)."""
        service = self._service()
        if caller.user_id is None:
            raise BadRequest("the application registers devices with dialogue.push_registrations")
        if request.kind not in service.config.kinds:
            raise BadRequest(f"this server does not send {request.kind} notifications; "
                             f"it accepts {', '.join(service.config.kinds) or 'none'}")
        keys = await self._checked(service, request)
        if len(request.rooms) > MAX_ROOMS_PER_REGISTRATION:
            raise BadRequest(f"a registration names at most {MAX_ROOMS_PER_REGISTRATION} rooms")
        rooms: list[str] = []
        for room_id in dict.fromkeys(request.rooms):
            room = self._access.room(room_id)  # BAD_REQUEST, ROOM_NOT_FOUND
            if "webpush" not in room.config.channels:
                raise BadRequest(f"room '{room.id}' does not send push notifications "
                                 "(its channels do not list 'webpush')")
            await self._access.may_see(caller, room)  # FORBIDDEN
            rooms.append(room.id)
        saved: tuple[Registration, bool] = await service.registrations.save(
            caller.user_id, request.kind, request.target, keys, rooms,
            service.config.max_registrations_per_user)
        return saved

    async def _checked(self, service: Any, request: PushRegistrationRequest) -> dict[str, Any]:
        """The keys to store, after the target and keys passed their checks (BAD_REQUEST)."""
        try:
            if request.kind == "webpush":
                await service.endpoints.check(request.target, service.resolver)
                p256dh, auth = request.keys.get("p256dh"), request.keys.get("auth")
                if not isinstance(p256dh, str) or not isinstance(auth, str):
                    raise InvalidRegistration("keys.p256dh and keys.auth are required")
                check_webpush_keys(p256dh, auth)
                return {"p256dh": p256dh, "auth": auth}
            if request.kind == "fcm":
                check_fcm_token(request.target)
                return {}
            topic = request.keys.get("topic")
            check_apns(request.target, topic if isinstance(topic, str) else None)
            return {"topic": topic, "sandbox": bool(request.keys.get("sandbox", False))}
        except InvalidRegistration as exc:
            raise BadRequest(str(exc)) from None

    async def registrations(self, caller: Caller) -> list[Registration]:
        if caller.user_id is None:
            return []
        found: list[Registration] = await self._service().registrations.of_user(caller.user_id)
        return found

    async def unregister(self, caller: Caller, registration_id: str) -> None:
        """Delete one of the caller's own; anything else is NOT_FOUND."""
        if caller.user_id is None or not await self._service().registrations.delete(
                caller.user_id, registration_id):
            raise NotFound(f"no push registration '{registration_id[:80]}' of yours")

    # preferences: quiet hours and muted rooms ----------------------------------------------
    async def preferences(self, caller: Caller) -> Preferences:
        """The caller's own push preferences (the defaults when never set)."""
        user_id = _user(caller)
        found: Preferences = await self._service().preferences.store.get(user_id)
        return found

    async def set_preferences(self, caller: Caller, quiet_hours: dict[str, str] | None,
                              muted_rooms: list[str]) -> Preferences:
        """Replace the caller's preferences (BAD_REQUEST for a bad time, zone or room id).

        A muted room need not exist (yet): a room of a family or one created at runtime is
        muted by its id, and a deleted one simply never notifies."""
        user_id = _user(caller)
        service = self._service()
        if len(muted_rooms) > MAX_MUTED_ROOMS:
            raise BadRequest(f"at most {MAX_MUTED_ROOMS} muted rooms")
        muted = tuple(dict.fromkeys(check_room_id(r, self._rt.config.max_room_id_length)
                                    for r in muted_rooms))
        saved: Preferences = await service.preferences.store.put(
            Preferences(user_id, _quiet(quiet_hours), muted))
        return saved


def _user(caller: Caller) -> str:
    if caller.user_id is None:
        raise BadRequest("push preferences are a user's: the application has none")
    return caller.user_id


def _quiet(value: dict[str, str] | None) -> QuietHours | None:
    """Checked quiet hours: HH:MM times (not equal) and a zone this server knows."""
    if value is None:
        return None
    start, end, tz = value.get("start", ""), value.get("end", ""), value.get("tz", "")
    for name, given in (("start", start), ("end", end)):
        if not _HH_MM.fullmatch(given):
            raise BadRequest(f"quiet_hours.{name} must be a time of day as HH:MM (00:00-23:59)")
    if start == end:
        raise BadRequest("quiet_hours: start and end are equal (mute the rooms instead)")
    try:
        if not tz or len(tz) > 64:
            raise ValueError(tz)
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadRequest(f"quiet_hours.tz: unknown time zone {tz[:64]!r} "
                         "(an IANA name such as Europe/Paris)") from None
    return QuietHours(start, end, tz)
