"""What a room event looks like as a notification: :class:`PushTemplate`, a callable, or a default.

``define_event("message", push=PushTemplate(title="{room_name}", body="{sender}: {text}"))``
fills ``{field}`` placeholders from the event's data (a missing field renders empty) and
``{room}``, ``{room_name}``, ``{sender}``, ``{event}``. ``push=`` may instead be a
callable ``fn(message) -> Notification | None`` (None: no notification for this event).
Without either, the default is the room's name as title and ``"<sender>: <text>"`` as body,
where text is the data's ``text`` or ``body`` field, else the event's name. Every
notification of a room carries the room id as its ``tag`` (the collapse key), so a device
shows one notification per room, and :func:`collapse` merges several into
"3 new messages in Design".
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..core.types import EventMessage
from .base import Notification, Urgency


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


DEFAULT_TEMPLATE = PushTemplate()


def notification_for(message: EventMessage, room_name: str, spec: Any) -> Notification | None:
    """The event's notification from its definition's ``push=`` (None: none for this event)."""
    if spec is None:
        return DEFAULT_TEMPLATE.render(message, room_name)
    if isinstance(spec, PushTemplate):
        return spec.render(message, room_name)
    made: Notification | None = spec(message)
    if made is not None and made.tag is None:
        made = replace(made, tag=message.room)
    return made


def collapse(notifications: Sequence[Notification], room_name: str) -> Notification:
    """One notification for several of a room: the newest's body, a count in the title."""
    newest = notifications[-1]
    if len(notifications) == 1:
        return newest
    return replace(newest, title=f"{len(notifications)} new messages in {room_name}",
                   data={**newest.data, "count": len(notifications)})


def to_json(n: Notification) -> dict[str, Any]:
    """A notification as stored in the outbox."""
    return {"title": n.title, "body": n.body, "url": n.url, "icon": n.icon, "tag": n.tag,
            "data": n.data, "ttl": n.ttl, "urgency": n.urgency}


def from_json(raw: Mapping[str, Any]) -> Notification:
    return Notification(title=str(raw.get("title", "")), body=str(raw.get("body", "")),
                        url=raw.get("url"), icon=raw.get("icon"), tag=raw.get("tag"),
                        data=dict(raw.get("data") or {}), ttl=int(raw.get("ttl", 86400)),
                        urgency=raw.get("urgency", "normal"))
