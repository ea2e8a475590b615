"""What a room event looks like as a notification: a :class:`PushTemplate`, a callable, or a default.

``define_event("message", push=PushTemplate(title="{room_name}", body="{sender}: {text}"))``
fills ``{field}`` placeholders from the event's data (the template and :class:`Notification`
are in :mod:`dialogue_fastapi.core.notifications`, beside the event definitions that name
them). ``push=`` may instead be a
callable ``fn(message) -> Notification | None`` (None: no notification for this event).
Without either, the default is the room's name as title and ``"<sender>: <text>"`` as body,
where text is the data's ``text`` or ``body`` field, else the event's name. Every
notification of a room carries the room id as its ``tag`` (the collapse key), so a device
shows one notification per room, and :func:`collapse` merges several into
"3 new messages in Design".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..core.notifications import Notification, PushTemplate
from ..core.types import EventMessage

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
