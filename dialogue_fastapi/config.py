"""Configuration: frozen pydantic models, validated once at startup."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .events import EventDefinition

Channel = Literal["websocket", "sse", "webpush"]
ROOM_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@\-]+$")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: str | float | int) -> float:
    """``"7d"``, ``"90s"``, ``"1.5h"`` or a number of seconds -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. '30s', '15m', '7d')")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _default_channels() -> list[Channel]:
    return ["websocket", "sse"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")


class Retention(_Frozen):
    """How long stored events are kept: by count per room and by age."""

    max_events: int | None = Field(default=None, ge=1, description="keep at most this many events per room")
    max_age: float | None = Field(default=None, description="seconds, or a duration like '7d'")

    @field_validator("max_age", mode="before")
    @classmethod
    def _age(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)


class RateLimit(_Frozen):
    """Per-client event rate limits, written like ``"10/second"``."""

    default: str | None = Field(default=None, description="limit for every publish, e.g. '100/minute'")
    rooms: dict[str, str] = Field(default_factory=dict, description="limits per room id")
    events: dict[str, str] = Field(default_factory=dict, description="limits per event name")
    key: Literal["user", "connection", "ip"] = Field(default="user", description="what a budget belongs to")
    storage: str = Field(default="memory://", description="'memory://' or 'redis://...' (shared by workers)")
    max_violations: int | None = Field(
        default=None, description="close with 4008 after this many refusals in a window"
    )


class RoomConfig(_Frozen):
    """A room declared in config, or created at runtime."""

    name: str = Field(description="display name")
    description: str | None = Field(default=None, description="shown in the room info object")
    events: list[EventDefinition] = Field(
        default_factory=list, description="allowed events; empty means any event name"
    )
    default_subscriptions: list[str] | None = Field(
        default=None, description="events a joiner gets; None means all"
    )
    max_size: int | None = Field(
        default=None, ge=1, description="most connections in the room, cluster-wide"
    )
    channels: list[Channel] = Field(
        default_factory=lambda: _default_channels(), description="transports that may join"
    )
    sync_history_on_join: bool | int = Field(
        default=False, description="True or N: send the newest (N) history events on join"
    )
    middleware: list[Callable[..., Any]] = Field(
        default_factory=list, description="event middleware run after the global ones"
    )
    rate_limit: str | RateLimit | None = Field(default=None, description="per-room publish limit")
    presence_events: bool = Field(
        default=False, description="send presence_join/presence_leave frames to members"
    )
    retention: Retention | None = Field(default=None, description="stored-event retention override")

    def event(self, name: str) -> EventDefinition | None:
        for definition in self.events:
            if definition.name == name:
                return definition
        return None

    def event_names(self) -> list[str]:
        return [definition.name for definition in self.events]


@dataclass(frozen=True)
class Hooks:
    """Lifecycle hooks; each may be sync or async.

    ``before_join(identity, room_id)`` may ``raise Reject(reason)`` or return
    False; ``before_each(message, identity)`` returns the (possibly changed)
    message or raises ``Reject``; ``after_each(message, recipients)``.
    """

    before_join: Callable[..., Any] | None = None
    on_connected: Callable[..., Any] | None = None
    on_disconnected: Callable[..., Any] | None = None
    on_joined: Callable[..., Any] | None = None
    on_left: Callable[..., Any] | None = None
    on_room_created: Callable[..., Any] | None = None
    on_room_deleted: Callable[..., Any] | None = None
    before_each: Callable[..., Any] | None = None
    after_each: Callable[..., Any] | None = None


class DialogueConfig(_Frozen):
    """Everything ``Dialogue(...)`` accepts, as one object.

    Deployment settings (marked *env* in the docs) can be overridden by
    ``DIALOGUE_<NAME>`` environment variables without code changes.
    """

    rooms: dict[str, RoomConfig] = Field(default_factory=dict, description="rooms declared up front, by id")
    events: list[EventDefinition] = Field(
        default_factory=list, description="events clients may name in create_room"
    )
    authenticate: Callable[..., Any] | None = Field(
        default=None, description="callable or FastAPI dependency returning an Identity"
    )
    allow_anonymous: bool = Field(
        default=False, description="accept connections without credentials (user id anon_...)"
    )
    hooks: Hooks = Field(default_factory=Hooks, description="lifecycle hooks")
    broker: Any = Field(default="memory://", description="'memory://', 'redis://...' or a Broker")
    persistence: Any = Field(
        default=None, description="None (hot history only), 'memory://', a URL, or an EventStore"
    )
    rate_limit: RateLimit | None = Field(default=None, description="per-client publish limits")
    middleware: list[Callable[..., Any]] = Field(
        default_factory=list, description="global event middleware, in order"
    )
    metrics: Any = Field(default=False, description="Prometheus metrics (later release)")
    push: Any = Field(default=None, description="push notifications (later release)")
    retention: Retention | None = Field(default=None, description="stored-event retention")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed besides same-origin; '*' allows any",
    )
    allow_client_rooms: bool = Field(default=True, description="clients may create rooms")
    max_message_size: int = Field(
        default=64 * 1024, ge=256,
        description="largest frame/event data in bytes; 4x this closes with 1009",
    )
    max_json_depth: int = Field(default=32, ge=2, description="deepest JSON nesting accepted")
    max_room_id_length: int = Field(default=128, ge=1, le=1024, description="longest room id")
    max_rooms_per_connection: int = Field(default=100, ge=1, description="rooms one connection may join")
    send_queue_max_messages: int = Field(
        default=1024, ge=1, description="queued frames per connection before 4009"
    )
    send_queue_max_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="queued bytes per connection before 4009"
    )
    heartbeat: float = Field(
        default=25.0, ge=0, description="seconds between client pings (sent in hello); 0 = off"
    )
    heartbeat_timeout: float | None = Field(
        default=None, description="close silent connections after this; default 3x heartbeat"
    )
    recovery_window: int = Field(
        default=1000, ge=0, le=1_000_000,
        description="events per room kept hot for recovery and history",
    )
    max_recovery: int = Field(
        default=1000, ge=0, description="most missed events a join with since replays"
    )
    default_event_history: int = Field(
        default=100, ge=0, description="history depth of events a room accepts undeclared"
    )
    shutdown_grace: float = Field(default=5.0, ge=0, description="seconds to drain sessions on stop")

    @field_validator("rooms")
    @classmethod
    def _room_ids(cls, rooms: dict[str, RoomConfig]) -> dict[str, RoomConfig]:
        for room_id in rooms:
            if not ROOM_ID_PATTERN.match(room_id):
                raise ValueError(f"room id {room_id!r}: use letters, digits and _.:@-")
        return rooms

    def idle_timeout(self) -> float | None:
        if self.heartbeat <= 0:
            return None
        return self.heartbeat_timeout or self.heartbeat * 3


ENV_SETTINGS: dict[str, str] = {
    "DIALOGUE_BROKER_URL": "broker",
    "DIALOGUE_DATABASE_URL": "persistence",
    "DIALOGUE_ALLOWED_ORIGINS": "allowed_origins",
    "DIALOGUE_ALLOW_ANONYMOUS": "allow_anonymous",
    "DIALOGUE_MAX_MESSAGE_SIZE": "max_message_size",
    "DIALOGUE_SEND_QUEUE_MAX_MESSAGES": "send_queue_max_messages",
    "DIALOGUE_SEND_QUEUE_MAX_BYTES": "send_queue_max_bytes",
    "DIALOGUE_HEARTBEAT": "heartbeat",
    "DIALOGUE_RECOVERY_WINDOW": "recovery_window",
}


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Deployment settings read from ``DIALOGUE_*`` environment variables."""
    source = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for var, field_name in ENV_SETTINGS.items():
        raw = source.get(var)
        if raw is None or raw == "":
            continue
        if field_name == "allowed_origins":
            found[field_name] = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            found[field_name] = raw
    return found


def resolve_room_events(
    raw: dict[str, Any], events: Sequence[EventDefinition]
) -> dict[str, Any]:
    """TOML rooms name their events; swap the names for the definitions."""
    by_name = {definition.name: definition for definition in events}
    names = raw.get("events") or []
    missing = [name for name in names if isinstance(name, str) and name not in by_name]
    if missing:
        raise ValueError(f"rooms name undefined events {missing}: pass them in events=[...]")
    return {**raw, "events": [by_name[n] if isinstance(n, str) else n for n in names]}
