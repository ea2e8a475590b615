"""The ``Dialogue`` facade: configuration in, router and server-side API out."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from .auth.dependency import build_auth_dependency
from .core.config import DialogueConfig, RoomConfig, env_overrides, resolve_room_events
from .core.events import EventDefinition, event_name
from .core.metrics import NO_METRICS
from .core.tracing import NO_TRACING, Tracing
from .core.types import EventMessage, Position, PresenceEntry
from .limits.http import HttpLimits
from .metrics.build import build as build_exporter
from .metrics.build import metrics_config
from .publish.handlers import Handler
from .publish.submission import PublishTools
from .push.base import Notification
from .rooms.registry import Room
from .routing import build_router
from .runtime import Runtime
from .stores.base import AuditEntry, AuditQuery
from .tracing import build as build_tracing
from .tracing import tracing_config
from .usecases import Caller, HistoryRequest, PublishRequest, UseCases
from .usecases.audit import audit, to_ms

if TYPE_CHECKING:
    from .metrics.exporter import Exporter


def _merge(config: DialogueConfig | None, settings: dict[str, Any]) -> DialogueConfig:
    base: dict[str, Any] = {}
    if config is not None:
        base = {name: getattr(config, name) for name in DialogueConfig.model_fields}
    return DialogueConfig(**{**base, **settings, **env_overrides()})


class Dialogue:
    """Real-time rooms and typed events for a FastAPI app.

    ``Dialogue(rooms=..., authenticate=...)`` or ``Dialogue(DialogueConfig(...))``;
    ``DIALOGUE_*`` environment variables override deployment settings. Include
    :attr:`router` in your app; that is all the wiring.
    """

    def __init__(self, config: DialogueConfig | None = None, **settings: Any) -> None:
        self.config = _merge(config, settings)
        self._metrics: Exporter | None = None
        wanted = metrics_config(self.config.metrics)
        if wanted is not None:
            self._metrics = build_exporter(wanted)
        self._runtime = Runtime(self.config, NO_METRICS if self._metrics is None else self._metrics.sink)
        if self._metrics is not None:
            self._metrics.watch(self._runtime)
        traced = tracing_config(self.config.tracing)  # opentelemetry is imported only if on
        tracing: Tracing = NO_TRACING if traced is None else build_tracing(traced)
        self._runtime.publisher.tracing = self._runtime.hub.tracing = tracing
        self._uc = UseCases.build(self._runtime)
        self._auth = build_auth_dependency(self.config.authenticate, self.config.allow_anonymous)
        self._router: APIRouter | None = None

    @classmethod
    def from_file(
        cls, path: str | Path, *, events: Sequence[EventDefinition] = (), **code: Any
    ) -> Dialogue:
        """Load settings from a TOML file; code-only settings (hooks, authenticate) as kwargs.

        Rooms in the file name their events; pass the definitions in ``events``.
        """
        raw = tomllib.loads(Path(path).read_text())
        raw = raw.get("dialogue", raw)
        all_events = list(events) + list(code.pop("events_extra", []))
        rooms = {
            room_id: RoomConfig(**resolve_room_events(spec, all_events))
            for room_id, spec in raw.pop("rooms", {}).items()
        }
        return cls(**{**raw, "rooms": rooms, "events": all_events, **code})

    # wiring ------------------------------------------------------------------
    @property
    def router(self) -> APIRouter:
        """The ``APIRouter`` to include: ``app.include_router(dialogue.router, prefix=...)``."""
        if self._router is None:
            extra = []
            if self._metrics is not None:
                from .metrics.endpoint import build_metrics_router  # prometheus-client: only if on

                extra.append(build_metrics_router(self._metrics))
            self._router = build_router(self._runtime, self._uc, self._auth, extra)
        return self._router

    @property
    def metrics(self) -> Exporter | None:
        """The Prometheus exporter when ``metrics=`` is on (None otherwise): its ``registry``,
        ``instrument(app)`` for HTTP route metrics, ``render()``."""
        return self._metrics

    def dependency(self) -> Dialogue:
        """For ``Annotated[Dialogue, Depends(dialogue.dependency)]`` in your routes."""
        return self

    @property
    def publish_tools(self) -> Callable[[], PublishTools]:
        """The FastAPI dependency giving the rate limiter and the global middleware that the
        router's WebSocket, SSE and REST routes use: override it in tests with
        ``app.dependency_overrides[dialogue.publish_tools] = lambda: PublishTools(...)``, or
        declare it in your own routes to check a limit (``tools.limiter``)."""
        return self._runtime.publish_tools

    @property
    def http_limits(self) -> HttpLimits | None:
        """The REST routes' limits (``RateLimit(http=...)``), None without any: its slowapi
        ``limiter`` (``.limiter.enabled = False`` switches them off, e.g. in a test) and
        ``reset()``."""
        return self._runtime.http_limits

    @property
    def runtime(self) -> Runtime:
        """The running parts (for tests and extensions; not a stable API)."""
        return self._runtime

    async def start(self) -> None:
        """Start without the router's lifespan (e.g. in a worker script)."""
        await self._runtime.start()

    async def stop(self) -> None:
        await self._runtime.stop()

    # events ------------------------------------------------------------------
    async def trigger(
        self, room_id: str, event: EventDefinition | str, data: Any, *,
        from_: str = "server", meta: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> EventMessage:
        """Publish from the server; validates like a client publish and returns the message."""
        message = await self._uc.publishing.trigger(
            PublishRequest(room_id, event_name(event), data, meta, idempotency_key), from_)
        # let connection writers run between triggers: a tight loop of triggers
        # would otherwise fill every queue before any of it is sent
        await asyncio.sleep(0)
        return message

    def on(self, room_id: str, event: EventDefinition | str, handler: Handler) -> Callable[[], None]:
        """Run ``handler(message)`` for each event (once per cluster); returns an unsubscribe.
        ``room_id`` may be a room family's pattern (``"dm:{a}:{b}"``: every instance) or
        ``"*"`` (every room)."""
        return self._runtime.handlers.add(room_id, event_name(event), handler)

    async def history(
        self, room_id: str, event: EventDefinition | str | None = None, *, limit: int = 50,
        before: int | None = None, after: int | None = None, sender: str | None = None,
        since: datetime | int | None = None, until: datetime | int | None = None,
    ) -> list[EventMessage]:
        """A page of history, ascending seq: hot history first, then the store.

        ``since``/``until`` bound ``ts`` (a datetime or ms since the epoch, inclusive).
        """
        events, _ = await self._uc.reading.history(Caller.server(), HistoryRequest(
            room_id, None if event is None else event_name(event), limit, before, after, sender,
            to_ms(since), to_ms(until)))
        return events

    async def publish_in(
        self, session: Any, room_id: str, event: EventDefinition | str, data: Any, *,
        from_: str = "server", meta: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> EventMessage | None:
        """Publish inside your SQLAlchemy ``AsyncSession``'s transaction (needs the SQL store).

        Validated and run through middleware now; delivered (seq, fan-out) only
        after the transaction commits, once; nothing happens on rollback.
        Returns the message (``seq`` 0 until delivered), or None if dropped.
        """
        return await self._uc.publishing.publish_in(
            session, PublishRequest(room_id, event_name(event), data, meta, idempotency_key), from_)

    async def audit(
        self, room_id: str | None = None, *, event: EventDefinition | str | None = None,
        sender: str | None = None, since: datetime | int | None = None,
        until: datetime | int | None = None, outcome: str = "all", limit: int = 100,
    ) -> list[AuditEntry]:
        """The audit trail (needs persistence): accepted (stored) events and, with
        ``audit_rejections=True``, refused ones; ``outcome`` is ``"accepted"``,
        ``"rejected"`` or ``"all"``. The newest ``limit``, ascending ``ts``."""
        return await audit(self._runtime, AuditQuery(
            room=room_id, event=None if event is None else event_name(event), sender=sender,
            since_ts=to_ms(since), until_ts=to_ms(until), outcome=outcome, limit=limit,
        ))

    async def flush(self) -> None:
        """Wait until every event published so far is in the store (write-behind drained)."""
        if self._runtime.writer is not None:
            await self._runtime.writer.flush()

    async def set_room_state(self, room_id: str, state: Any) -> None:
        """Replace the room's state (any JSON); persisted when there is a store."""
        await self._runtime.states.set(self._uc.access.room(room_id).id, state)

    async def get_room_state(self, room_id: str) -> Any:
        """The room's state, or None."""
        return await self._runtime.states.get(self._uc.access.room(room_id).id)

    async def position(self, room_id: str) -> Position:
        return await self._uc.reading.position(room_id)

    # rooms -------------------------------------------------------------------
    def room(self, room_id: str) -> Room:
        return self._uc.access.room(room_id)

    def rooms(self) -> list[Room]:
        return self._runtime.registry.all()

    async def create_room(
        self, room_id: str, config: RoomConfig, created_by: str | None = None
    ) -> Room:
        return await self._uc.rooms.create_as_server(room_id, config, created_by)

    async def delete_room(self, room_id: str) -> None:
        await self._uc.rooms.delete(Caller.server(), room_id)

    async def presence(self, room_id: str) -> list[PresenceEntry]:
        return await self._uc.reading.presence(Caller.server(), room_id)

    # users -------------------------------------------------------------------
    async def send_to_user(
        self, user_id: str, event: str, data: Any, *, from_: str = "server"
    ) -> None:
        """A ``direct`` frame to every connection of the user, on every node."""
        await self._uc.users.send_to_user(user_id, event, data, from_)

    async def disconnect_user(self, user_id: str, reason: str = "disconnected by the server") -> None:
        """Close every connection of the user with 4004 (clients do not reconnect)."""
        await self._uc.users.disconnect_user(user_id, reason)

    async def get_clients(self, user_id: str) -> list[str]:
        """Client ids of the user's live connections, cluster-wide."""
        return await self._uc.users.clients_of(user_id)

    async def is_in_room(self, user_id: str, room_id: str) -> bool:
        return await self._uc.users.in_room(user_id, room_id)

    async def push(self, user_id: str, notification: Notification) -> dict[str, str]:
        """Send a push notification to every registered device of the user now (no grace
        period, whether or not the user is connected); needs ``push=``. Returns each
        registration's outcome by id: ``delivered``, ``gone`` (pruned), ``failed``,
        ``gave_up`` (every retry failed), ``later`` (over the device's rate: not sent)."""
        dispatch = self._runtime.push_dispatch
        if dispatch is None:
            raise RuntimeError("push notifications are off: pass push=PushConfig(...)")
        return await dispatch.push(user_id, notification)
