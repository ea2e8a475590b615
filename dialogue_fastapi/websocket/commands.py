"""Client commands of protocol v1, parsed strictly (wrong types are BAD_REQUEST)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import BadRequest
from ..core.rules import MAX_INT64

EventList = list[str] | Literal["*"]


class _Command(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Since(_Command):
    seq: int = Field(ge=0, le=MAX_INT64)
    epoch: str = Field(max_length=128)


class RoomCommand(_Command):
    room: str


class JoinCommand(RoomCommand):
    subscriptions: EventList | None = None
    since: Since | None = None
    history: int | None = Field(default=None, ge=0, le=1000)


class SubscribeCommand(RoomCommand):
    events: EventList


class UnsubscribeCommand(RoomCommand):
    events: list[str]


class PublishCommand(RoomCommand):
    event: str  # the use case checks names (EVENT_NOT_ALLOWED), the same on every transport
    data: Any = None
    meta: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class HistoryCommand(RoomCommand):
    event: str | None = None
    limit: int = Field(default=50, ge=1, le=1000)
    before: int | None = Field(default=None, ge=0, le=MAX_INT64)
    after: int | None = Field(default=None, ge=0, le=MAX_INT64)
    sender: str | None = Field(default=None, max_length=256)
    since_ts: int | None = Field(default=None, ge=0, le=MAX_INT64)
    until_ts: int | None = Field(default=None, ge=0, le=MAX_INT64)


class CreateRoomCommand(RoomCommand):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    max_size: int | None = Field(default=None, ge=1)
    events: list[str] | None = None
    presence_events: bool = False
    sync_history_on_join: int = Field(default=0, ge=0, le=1000)


class EmptyCommand(_Command):
    pass


def parse(model: type[_Command], frame: dict[str, Any]) -> Any:
    """Validate a command's fields; errors name each bad field."""
    try:
        return model.model_validate(frame)
    except ValidationError as exc:
        details = [
            {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False)
        ]
        first = details[0]
        field = ".".join(str(part) for part in first["loc"]) or "command"
        raise BadRequest(
            f"'{frame.get('op')}': field '{field}': {first['msg']}", details=details
        ) from None


#: The operation table: every WebSocket op, its command model and what it does. The
#: WebSocket dispatcher, the AsyncAPI document and the docs are built from it.
OPERATIONS: dict[str, tuple[type[_Command], str]] = {
    "join": (JoinCommand, "Join a room; the reply comes before any live event of the room"),
    "leave": (RoomCommand, "Leave a room"),
    "subscribe": (SubscribeCommand, "Add events to this connection's subscriptions in a room"),
    "unsubscribe": (UnsubscribeCommand, "Remove events from this connection's subscriptions"),
    "publish": (PublishCommand, "Publish an event to a room"),
    "history": (HistoryCommand, "Read a page of a room's history"),
    "presence": (RoomCommand, "Who is in a room"),
    "rooms": (EmptyCommand, "The rooms this server has"),
    "create_room": (CreateRoomCommand, "Create a room at runtime"),
    "delete_room": (RoomCommand, "Delete a runtime room (its creator only)"),
    "ping": (EmptyCommand, "Keep-alive; answers {}"),
}
