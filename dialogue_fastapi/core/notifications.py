"""What a notification is and how a room event renders into one: :class:`Notification`
and :class:`PushTemplate`, the values of ``define_event(..., push=...)``.

``PushTemplate(title="{room_name}", body="{sender}: {text}")`` fills ``{field}``
placeholders from the event's data (a missing field renders empty) and ``{room}``,
``{room_name}``, ``{sender}``, ``{event}``. Senders, queues and the default template
are in :mod:`dialogue_fastapi.push`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .types import EventMessage

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


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


_FORMATTER = string.Formatter()


def _fill(text: str, values: Mapping[str, Any]) -> str:
    try:
        return _FORMATTER.vformat(text, (), _Blank(values))
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return text  # a template that does not fit this event's data: shown as written


@dataclass(frozen=True, slots=True)
class PushTemplate:
    """A notification with ``{field}`` placeholders, filled from each event."""

    title: str = "{room_name}"
    body: str = "{sender}: {text}"
    url: str | None = None
    icon: str | None = None
    urgency: Urgency = "normal"

    def render(self, message: EventMessage, room_name: str) -> Notification:
        values = placeholders(message, room_name)
        return Notification(
            title=_fill(self.title, values), body=_fill(self.body, values),
            url=None if self.url is None else _fill(self.url, values),
            icon=None if self.icon is None else _fill(self.icon, values),
            tag=message.room, urgency=self.urgency,
            data={"room": message.room, "seq": message.seq, "event": message.event})


def placeholders(message: EventMessage, room_name: str) -> dict[str, Any]:
    data = message.data if isinstance(message.data, dict) else {}
    text = data.get("text") or data.get("body") or message.event
    return {**data, "room": message.room, "room_name": room_name, "sender": message.from_,
            "event": message.event, "text": text}
