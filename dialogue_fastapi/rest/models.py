"""Pydantic models of the REST bodies, for validation and the OpenAPI schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.config import ROOM_ID_PATTERN


class ErrorObject(BaseModel):
    code: str = Field(examples=["ROOM_NOT_FOUND"])
    message: str
    details: list[dict[str, Any]] | None = None
    reason: str | None = None
    retry_after: float | None = None
    correlation_id: str | None = None


class ErrorBody(BaseModel):
    """Every REST error: ``{"error": {"code", "message", ...}}``."""

    error: ErrorObject


class PositionModel(BaseModel):
    seq: int
    epoch: str


class RoomInfo(BaseModel):
    id: str
    name: str
    description: str | None = None
    max_size: int | None = None
    size: int
    events: list[str]
    default_subscriptions: list[str]
    channels: list[str]
    created_by: str | None = None
    family: bool | str | None = Field(
        default=None, description="true for a room family in a listing (its id is the pattern); "
        "the pattern for an instance of one")
    params: dict[str, str] | None = Field(default=None, description="an instance's parameters")


class RoomList(BaseModel):
    rooms: list[RoomInfo]


class CreateRoomBody(BaseModel):
    # the pattern is documented for clients; the route checks it itself, with a message
    # that names the characters (and the configured max_room_id_length)
    room: str = Field(min_length=1, max_length=1024,
                      json_schema_extra={"pattern": ROOM_ID_PATTERN.pattern})
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    max_size: int | None = Field(default=None, ge=1)
    events: list[str] | None = None
    presence_events: bool = False
    sync_history_on_join: int = Field(default=0, ge=0, le=1000)


class EventEnvelope(BaseModel):
    op: Literal["event"] = "event"
    room: str
    event: str
    data: Any = None
    from_: str = Field(alias="from")
    ts: int
    seq: int
    meta: dict[str, Any] = Field(default_factory=dict)


class HistoryPage(BaseModel):
    events: list[EventEnvelope]
    position: PositionModel


class PublishBody(BaseModel):
    event: str = Field(description="1..128 characters, no control characters")
    data: Any = None
    meta: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class PublishAck(BaseModel):
    seq: int | None
    ts: int | None
    duplicate: bool = False
    dropped: bool = False


class PresenceUser(BaseModel):
    user_id: str
    client_id: str


class PresenceResult(BaseModel):
    count: int
    users: list[PresenceUser]


class SubscriberReport(BaseModel):
    """The broker's subscriber (Redis only)."""

    up: bool = Field(description="the subscriber listens")
    reconnects: int = Field(description="times it reconnected since the node started")
    gap_repairs: int = Field(description="gaps in a room's seq repaired from the stream or the store")


class StoreReport(BaseModel):
    """The write-behind queue in front of the store (with persistence only)."""

    pending: int = Field(description="events waiting to be written")
    lag_seconds: float = Field(description="age of the oldest of them (0 when none waits)")


class PushReport(BaseModel):
    """The push dispatcher (with ``push=`` only): counters since start and its queue."""

    model_config = ConfigDict(extra="allow")
    queue_depth: int = Field(description="events waiting for the dispatcher")
    in_flight: int = Field(description="sends waiting for a push service")
    sent: int = 0
    failed: int = 0
    gave_up: int = 0
    dropped: int = 0


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(default_factory=dict)
    dead_letters: int = Field(0, description="events the database refused as data and kept "
                              "aside (informational: never makes readiness fail)")
    subscriber: SubscriberReport | None = Field(
        None, description="/ready with the Redis broker (informational)")
    store: StoreReport | None = Field(None, description="/ready with persistence (informational)")
    push: PushReport | None = Field(None, description="/ready with push (informational)")
