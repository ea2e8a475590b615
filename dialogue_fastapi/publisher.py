"""Publishing an event: validation, the middleware chain, then the broker."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .brokers.base import Broker
from .config import DialogueConfig, Hooks
from .errors import EventNotAllowed, NotInRoom, PayloadTooLarge, Unavailable
from .events import EventDefinition
from .handlers import HandlerRegistry
from .history import HistoryReader
from .hooks import fire
from .pipeline import Middleware, PublishContext, apply_before_each, run_middleware
from .rooms import Room
from .stores.base import EventStore
from .types import EventMessage, Identity

logger = logging.getLogger("dialogue_fastapi")


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What the sender's ack carries."""

    message: EventMessage | None  # None: dropped by a middleware
    duplicate: bool = False


class Publisher:
    """Runs the pipeline and hands accepted events to the broker."""

    def __init__(
        self, config: DialogueConfig, broker: Broker, store: EventStore | None,
        handlers: HandlerRegistry, hooks: Hooks, history: HistoryReader,
    ) -> None:
        self._history = history
        self._config = config
        self._broker = broker
        self._store = store
        self._handlers = handlers
        self._hooks = hooks
        self._global_events = {d.name: d for d in config.events}
        self._global_middleware: list[Middleware] = list(config.middleware)

    def definition(self, room: Room, event: str) -> EventDefinition | None:
        """The event's definition in the room; raises EVENT_NOT_ALLOWED if not listed."""
        if not event or not isinstance(event, str) or len(event) > 128:
            raise EventNotAllowed(f"invalid event name {event!r}")
        definition = room.config.event(event)
        if definition is None and room.config.events:
            raise EventNotAllowed(
                f"room '{room.id}' does not accept event '{event}' "
                f"(allowed: {', '.join(room.config.event_names())})"
            )
        return definition

    async def publish(
        self, room: Room, event: str, data: Any, *, identity: Identity | None,
        transport: str, client_id: str | None = None, joined: bool | None = None,
        meta: dict[str, Any] | None = None, idempotency_key: str | None = None,
    ) -> PublishResult:
        """Run the whole pipeline; raises a DialogueError with the protocol code."""
        size = len(orjson.dumps(data))
        if size > self._config.max_message_size:
            raise PayloadTooLarge(
                f"event data is {size} bytes; the limit is {self._config.max_message_size}"
            )
        if joined is False:
            raise NotInRoom(f"join room '{room.id}' before publishing to it")
        definition = self.definition(room, event)
        value = definition.validate(data) if definition is not None else data
        message = EventMessage(
            room=room.id, event=event, data=value,
            from_=identity.user_id if identity is not None else "server",
            ts=int(time.time() * 1000), meta=dict(meta or {}),
            idempotency_key=idempotency_key,
        )
        ctx = PublishContext(message, room, identity, transport, client_id)
        chain = self._global_middleware + list(room.config.middleware)
        duplicate = False

        async def final(current: PublishContext) -> EventMessage | None:
            nonlocal duplicate
            accepted = await apply_before_each(
                self._hooks.before_each, current.message, current.identity
            )
            published, duplicate = await self._commit(room, accepted)
            return published

        if chain:
            result = await run_middleware(ctx, chain, final)
        else:
            result = await final(ctx)
        if result is None or ctx.dropped:
            return PublishResult(None)
        return PublishResult(result, duplicate)

    async def _commit(self, room: Room, message: EventMessage) -> tuple[EventMessage, bool]:
        try:
            published = await self._broker.publish(
                message, self._config.recovery_window, self._history.depth(room, message.event)
            )
        except Exception as exc:
            logger.warning("broker publish failed for room %s: %s", room.id, exc)
            raise Unavailable("the broker is unavailable; retry later") from None
        if published.duplicate:
            return published.message, True
        stored = published.message
        if self._store is not None:
            try:
                await self._store.append([stored])
            except Exception:
                logger.exception("store append failed for %s seq %d", room.id, stored.seq)
        await self._handlers.run(stored)
        recipients = published.recipients
        if recipients is None:
            recipients = await self._broker.presence.count(room.id)
        await fire("after_each", self._hooks.after_each, stored, recipients)
        return stored, False
