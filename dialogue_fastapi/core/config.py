"""Configuration: frozen pydantic models, validated once at startup."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config_env import ENV_SETTINGS as ENV_SETTINGS
from .config_env import env_overrides as env_overrides
from .config_env import resolve_room_events as resolve_room_events
from .events import EventDefinition
from .families import FamilyPattern, is_family, overlap, parse_family
from .push_config import APNSConfig as APNSConfig
from .push_config import FCMConfig as FCMConfig
from .push_config import PushConfig as PushConfig
from .rules import ROOM_ID_PATTERN as ROOM_ID_PATTERN

Channel = Literal["websocket", "sse", "webpush"]

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


#: the REST routes ``RateLimit.http`` can limit, by name
HTTP_ROUTE_NAMES = (
    "rooms", "create_room", "delete_room", "history", "publish", "presence", "tickets", "push",
)


class RateLimit(_Frozen):
    """Per-client event rate limits, written like ``"10/second"``."""

    default: str | None = Field(default=None, description="limit for every publish, e.g. '100/minute'")
    rooms: dict[str, str] = Field(default_factory=dict, description="limits per room id")
    events: dict[str, str] = Field(default_factory=dict, description="limits per event name")
    key: Literal["user", "connection", "ip"] = Field(default="user", description="what a budget belongs to")
    storage: str = Field(default="memory://", description="'memory://' or 'redis://...' (shared by workers)")
    prefix: str = Field(default="dialogue-rl", description="key prefix of the budgets in the storage")
    strategy: Literal["moving-window", "sliding-window"] = Field(
        default="sliding-window",
        description="sliding counter (cheap, approximate) or exact moving window (cost grows with the limit)",
    )
    max_violations: int | None = Field(
        default=None, description="close with 4008 after this many refusals in a window"
    )
    violation_window: float = Field(default=60.0, gt=0, description="seconds max_violations counts over")
    connections: str | None = Field(
        default=None, description="connection attempts per client IP on /ws and /sse, e.g. '30/minute'"
    )
    auth_failures: str | None = Field(
        default=None,
        description="failed authentications per client IP on every route, e.g. '10/minute'; "
        "over it, the IP is refused before authenticate runs",
    )

    instances: str | None = Field(
        default="600/minute",
        description="new room-family instances one user may bring to life on a node "
        "(join, read or publish of an instance nobody used lately)",
    )

    http: dict[str, str] = Field(
        default_factory=dict,
        description="REST request limits by route (rooms, create_room, delete_room, history, publish, "
        "presence, tickets, push) or 'default' for each of them, e.g. {'create_room': '5/minute'}",
    )

    @field_validator("default", "connections", "auth_failures", "instances")
    @classmethod
    def _limit(cls, value: str | None) -> str | None:
        return None if value is None else _valid_limit(value)

    @field_validator("rooms", "events")
    @classmethod
    def _limits(cls, value: dict[str, str]) -> dict[str, str]:
        return {k: _valid_limit(v) for k, v in value.items()}

    @field_validator("http")
    @classmethod
    def _http_limits(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {"default", *HTTP_ROUTE_NAMES})
        if unknown:
            raise ValueError(f"no REST route is called {', '.join(map(repr, unknown))}; "
                             f"limit one of {', '.join(HTTP_ROUTE_NAMES)} or 'default'")
        return {k: _valid_limit(v) for k, v in value.items()}


def _valid_limit(text: str) -> str:
    from limits import parse

    try:
        parse(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate limit: write it like '10/second'") from None
    return text


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

    @field_validator("rate_limit")
    @classmethod
    def _room_limit(cls, value: str | RateLimit | None) -> str | RateLimit | None:
        return _valid_limit(value) if isinstance(value, str) else value
    presence_events: bool = Field(
        default=False, description="send presence_join/presence_leave frames to members"
    )
    retention: Retention | None = Field(default=None, description="stored-event retention override")
    durable: bool | None = Field(
        default=None, description="ack publishes after the store's commit; None: the global setting"
    )
    members: list[str] | None = Field(
        default=None,
        description="room families: the parameters naming the only users allowed in an instance",
    )
    authorize: Callable[..., Any] | None = Field(
        default=None, description="room families: fn(identity, room) -> bool, or raise Reject",
    )
    idle_ttl: float | None = Field(
        default=300.0, ge=0,
        description="room families: seconds an instance without local members and without use "
        "stays in memory before it is dropped (seq and epoch continue from the store or Redis); "
        "None: never dropped",
    )

    def event(self, name: str) -> EventDefinition | None:
        for definition in self.events:
            if definition.name == name:
                return definition
        return None

    def event_names(self) -> list[str]:
        return [definition.name for definition in self.events]


#: seconds; from half a millisecond (a local fan-out) to ten seconds (a stuck backend)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsConfig(_Frozen):
    """Prometheus metrics (the ``metrics`` extra); ``metrics=True`` is ``MetricsConfig()``."""

    enabled: bool = Field(default=True, description="export the metrics")
    format: Literal["prometheus"] = Field(default="prometheus", description="the exposition format")
    endpoint: str | None = Field(
        default="/metrics", description="path of the scrape endpoint under the router; None: no route "
        "(expose `registry` yourself)")
    admin: Callable[..., Any] | None = Field(
        default=None, description="FastAPI dependency guarding the endpoint (raise HTTPException to refuse)")
    allow_unprotected: bool = Field(
        default=False, description="serve the endpoint without `admin` to requests that are not direct "
        "loopback requests (see docs/metrics.md)")
    registry: Any = Field(
        default=None, description="the prometheus_client CollectorRegistry to use; None: a new one")
    room_label: Callable[..., str] | None = Field(
        default=None, description="fn(room) -> label of a runtime room (a bounded group); "
        "None: `runtime_label`")
    runtime_label: str = Field(default="runtime", description="the room label of every runtime room")
    max_label_values: int = Field(
        default=100, ge=1, le=10_000,
        description="distinct values of the room label (and of the event label); more fold into '_other'")
    max_event_series: int = Field(
        default=100, ge=1, le=100_000,
        description="(room, event) label pairs of the per-event metrics; more fold into ('_other', '_other')")
    sample_interval: float = Field(
        default=1.0, gt=0, description="multiprocess mode: seconds between a worker's samples of "
        "its gauges (connections, rooms, queues)")
    latency_buckets: tuple[float, ...] = Field(
        default=LATENCY_BUCKETS, description="histogram buckets (seconds) of the latency metrics")


class TracingConfig(_Frozen):
    """OpenTelemetry traces (the ``otel`` extra); ``tracing=True`` is ``TracingConfig()``."""

    enabled: bool = Field(default=True, description="open spans for publishes and fan-outs")
    tracer_provider: Any = Field(
        default=None, description="the opentelemetry TracerProvider to use; None: the global one "
        "(opentelemetry.trace.set_tracer_provider)")


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
    broker: Any = Field(default="memory://", description=(
        "'memory://', 'redis://...', 'redis+cluster://host:port,...' or a Broker"))
    persistence: Any = Field(
        default=None, description="None (hot history only), 'memory://', a URL, or an EventStore"
    )
    rate_limit: RateLimit | None = Field(default=None, description="per-client publish limits")
    middleware: list[Callable[..., Any]] = Field(
        default_factory=list, description="global event middleware, in order"
    )
    metrics: bool | MetricsConfig = Field(
        default=False, description="Prometheus metrics: True or a MetricsConfig (needs the metrics extra)"
    )
    tracing: bool | TracingConfig = Field(
        default=False, description="OpenTelemetry spans: True or a TracingConfig (needs the otel extra)"
    )
    push: PushConfig | None = Field(
        default=None, description="push notifications: a PushConfig (needs the push extra)")
    retention: Retention | None = Field(default=None, description="stored-event retention")
    durable: bool = Field(
        default=False, description="ack every publish only after the store committed it"
    )
    write_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="most events written to the store in one batch"
    )
    write_interval: float = Field(
        default=0.05, ge=0, description="seconds a partial batch waits for more events"
    )
    write_max_pending: int = Field(
        default=100_000, ge=1,
        description="events held in memory while the database is unreachable; then UNAVAILABLE",
    )
    durable_timeout: float = Field(
        default=5.0, gt=0, description="seconds a durable publish waits for the commit"
    )
    audit_rejections: bool = Field(
        default=False, description="also store refused publishes (code, reason) in the audit trail"
    )
    retention_interval: float = Field(
        default=60.0, gt=0, description="seconds between retention passes"
    )
    retention_batch: int = Field(
        default=1000, ge=1, description="most rows one retention statement deletes"
    )
    outbox_interval: float = Field(
        default=1.0, gt=0, description="seconds between outbox relay passes (publish_in)"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed besides same-origin; '*' allows any",
    )
    ticket_ttl: float = Field(
        default=30.0, gt=0, le=3600,
        description="seconds a POST /tickets connection ticket stays valid (it is single-use)",
    )
    allow_client_rooms: bool = Field(default=True, description="clients may create rooms")
    max_message_size: int = Field(
        default=64 * 1024, ge=256,
        description="largest frame/event data in bytes; 4x this closes with 1009",
    )
    max_json_depth: int = Field(default=32, ge=2, description="deepest JSON nesting accepted")
    max_room_id_length: int = Field(default=128, ge=1, le=1024, description="longest room id")
    max_rooms_per_connection: int = Field(default=100, ge=1, description="rooms one connection may join")
    max_instances: int = Field(
        default=100_000, ge=1,
        description="live room-family instances on one node (with members, or used within their "
        "idle_ttl); a new one beyond: UNAVAILABLE",
    )
    max_rooms_per_user: int = Field(
        default=10, ge=0, description="runtime rooms one user may own (create_room); 0: none"
    )
    max_subscriptions: int = Field(
        default=64, ge=1, description="event names in one connection's subscriptions of a room"
    )
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
    hot_history_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0,
        description="memory broker: bytes of encoded events kept hot on the node over all rooms; "
        "over it the oldest events of the least recently active rooms go first (0: no budget)",
    )
    gc_freeze: bool = Field(
        default=False,
        description="gc.freeze() once started: objects alive at startup leave the collector's scans",
    )
    gc_freeze_every: float | None = Field(
        default=None, gt=0,
        description="seconds between gc.freeze() calls while running (implies gc_freeze); "
        "cycles among frozen objects are never collected: see docs/benchmarks.md",
    )
    gc_thresholds: tuple[int, int, int] | None = Field(
        default=None,
        description="gc.set_threshold(...) at start, e.g. (50000, 50, 100); None: Python's own",
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
        families: list[FamilyPattern] = []
        for room_id, room in rooms.items():
            if is_family(room_id):
                family = parse_family(room_id)
                unknown = sorted(set(room.members or ()) - set(family.params))
                if unknown:
                    raise ValueError(f"room family {room_id!r}: members {unknown} are not "
                                     f"among its parameters {list(family.params)}")
                for other in families:
                    if overlap(family, other):
                        raise ValueError(f"room families {other.pattern!r} and {room_id!r} "
                                         "can match the same room id; make one more specific")
                families.append(family)
            elif not ROOM_ID_PATTERN.fullmatch(room_id):
                raise ValueError(f"room id {room_id!r}: use letters, digits and _.:@-")
            elif room.members is not None:
                raise ValueError(f"room {room_id!r}: members= is for room families")
        return rooms

    @model_validator(mode="after")
    def _audit_needs_a_store(self) -> DialogueConfig:
        if self.audit_rejections and self.persistence is None:
            raise ValueError("audit_rejections=True needs persistence (a database URL or a store)")
        return self

    def idle_timeout(self) -> float | None:
        if self.heartbeat <= 0:
            return None
        return self.heartbeat_timeout or self.heartbeat * 3

