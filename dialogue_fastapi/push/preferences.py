"""A user's push preferences: quiet hours and muted rooms, and the check the dispatcher makes.

**Muted rooms** never notify the user: when a room's notification is due, the user's
devices are done with it without a send. **Quiet hours** are a daily window (``start`` and
``end`` as ``HH:MM`` in an IANA zone; ``start`` after ``end`` crosses midnight, as 22:00 to
07:00): a notification due inside the window is *held* until the window ends, then every
notification of one room held for one device collapses into one ("5 new messages in Design").
Who is offline is checked again at the end, so a user who read the room meanwhile gets nothing.

The check reads the clock through :attr:`PreferenceGate.clock` (a seam: tests set a time of
day). The SQL form of the store is ``stores/sql_push_preferences.py``; the memory form here
serves an app without persistence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import Protocol
from zoneinfo import ZoneInfo

MAX_MUTED_ROOMS = 200
MUTED = -1.0  # PreferenceGate.hold's answer for a muted room


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window: ``start`` and ``end`` as ``HH:MM`` in the IANA zone ``tz``."""

    start: str
    end: str
    tz: str

    def seconds_left(self, now: float) -> float:
        """Seconds until the window ends when ``now`` (epoch seconds) is inside it, else 0."""
        zone = ZoneInfo(self.tz)
        local = datetime.fromtimestamp(now, zone)
        start, end = _time(self.start), _time(self.end)
        of_day = local.time().replace(tzinfo=None)
        if start < end:
            inside, day = start <= of_day < end, local.date()
        else:  # across midnight: the end is tomorrow when it is past the start today
            inside = of_day >= start or of_day < end
            day = local.date() + timedelta(days=1) if of_day >= start else local.date()
        if not inside:
            return 0.0
        ends = datetime.combine(day, end, tzinfo=zone)
        return max(ends.timestamp() - now, 1.0)  # a DST gap may put the end "before" now


def _time(value: str) -> clock_time:
    hours, minutes = value.split(":")
    return clock_time(int(hours), int(minutes))


@dataclass(frozen=True, slots=True)
class Preferences:
    """One user's preferences (the defaults when they never set any)."""

    user_id: str
    quiet_hours: QuietHours | None = None
    muted: tuple[str, ...] = ()
    updated_at: float | None = None  # seconds since the epoch; None: never set

    def to_dict(self) -> dict[str, object]:
        quiet = self.quiet_hours
        return {"quiet_hours": None if quiet is None else
                {"start": quiet.start, "end": quiet.end, "tz": quiet.tz},
                "muted_rooms": list(self.muted), "updated_at": self.updated_at}


class PushPreferences(Protocol):
    """The store of preferences (``stores/sql_push_preferences.py``, or :class:`MemoryPreferences`)."""

    async def get(self, user_id: str) -> Preferences:
        """The user's preferences (the defaults when none were saved)."""
        ...

    async def put(self, preferences: Preferences) -> Preferences:
        """Replace the user's preferences; answers them as saved (with ``updated_at``)."""
        ...


@dataclass
class MemoryPreferences:
    """:class:`PushPreferences` in a dict (no persistence)."""

    _by_user: dict[str, Preferences] = field(default_factory=dict)

    async def get(self, user_id: str) -> Preferences:
        return self._by_user.get(user_id) or Preferences(user_id)

    async def put(self, preferences: Preferences) -> Preferences:
        saved = Preferences(preferences.user_id, preferences.quiet_hours,
                            tuple(dict.fromkeys(preferences.muted)), time.time())
        self._by_user[saved.user_id] = saved
        return saved


class PreferenceGate:
    """What the dispatcher asks before a device's send: mute, hold, or go."""

    def __init__(self, store: PushPreferences) -> None:
        self.store = store
        self.clock: Callable[[], float] = time.time  # epoch seconds (a seam for tests)
        self.muted = 0  # device notifications not sent: the room is muted
        self.held = 0  # device notifications held for the end of quiet hours

    async def hold(self, user_id: str, room_id: str) -> float:
        """0: send now; :data:`MUTED`: never; else the seconds until the quiet hours end."""
        preferences = await self.store.get(user_id)
        if room_id in preferences.muted:
            self.muted += 1
            return MUTED
        if preferences.quiet_hours is None:
            return 0.0
        left = preferences.quiet_hours.seconds_left(self.clock())
        if left:
            self.held += 1
        return left

    def stats(self) -> dict[str, int]:
        return {"muted": self.muted, "held": self.held}
