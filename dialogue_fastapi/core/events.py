"""Event definitions: a name, an optional schema, and hot-history depth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from .errors import ValidationFailed
from .notifications import Notification, PushTemplate
from .rules import EVENT_NAME_PATTERN
from .types import EventMessage

#: ``push=`` of an event: a template, or ``fn(message) -> Notification | None``
PushSpec = PushTemplate | Callable[[EventMessage], Notification | None]


@dataclass(frozen=True, eq=False)
class EventDefinition:
    """An event a room accepts. Build one with :func:`define_event`."""

    name: str
    schema: Any = None
    description: str | None = None
    history: int | None = None
    push: PushSpec | None = None
    _adapter: TypeAdapter[Any] | None = field(default=None, repr=False)

    def validate(self, data: Any) -> Any:
        """Validate ``data`` against the schema; returns the JSON-ready parsed value."""
        if self._adapter is None:
            return data
        try:
            value = self._adapter.validate_python(data)
        except PydanticValidationError as exc:
            details = [
                {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
                for err in exc.errors(include_url=False, include_context=False)
            ]
            raise ValidationFailed(
                f"data of event '{self.name}' failed validation: {details[0]['msg']}"
                if details else f"data of event '{self.name}' failed validation",
                details=details,
            ) from None
        return self._adapter.dump_python(value, mode="json")

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the event's data (``{}`` means any JSON)."""
        return self._adapter.json_schema() if self._adapter is not None else {}


def define_event(
    name: str,
    schema: Any = None,
    *,
    description: str | None = None,
    history: int | None = None,
    push: PushSpec | None = None,
) -> EventDefinition:
    """Declare an event.

    ``schema`` is a pydantic model or any type pydantic can validate
    (``int``, ``list[str]``, a ``TypedDict``...); ``None`` accepts any JSON.
    ``history=N`` keeps the newest N events of this name in hot history.
    ``push=`` is the notification of the event in rooms with ``"webpush"`` in their
    channels: a :class:`~dialogue_fastapi.core.notifications.PushTemplate` or
    ``fn(message) -> Notification | None`` (default: room name and ``"sender: text"``).
    """
    if not isinstance(name, str) or EVENT_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(f"event name {name!r}: 1..128 characters, no control characters")
    if history is not None and history < 0:
        raise ValueError("history must be >= 0")
    adapter: TypeAdapter[Any] | None = TypeAdapter(schema) if schema is not None else None
    return EventDefinition(name, schema, description, history, push, adapter)


def event_name(event: EventDefinition | str) -> str:
    """Wherever an event is named, a definition or its name both work."""
    return event.name if isinstance(event, EventDefinition) else event
