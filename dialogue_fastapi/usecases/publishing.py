"""Publish: the one way an event enters a room, from any transport or the application."""

from __future__ import annotations

import secrets
from typing import Any

from ..core.types import EventMessage
from ..publish.publisher import PublishResult
from ..publish.submission import Submission
from ..runtime import Runtime
from .access import Access
from .caller import Caller
from .requests import PublishRequest


class Publishing:
    """Access (channel, ``before_join`` for callers without a connection), then the
    publish pipeline, whose first step enforces the input rules."""

    def __init__(self, rt: Runtime, access: Access) -> None:
        self._rt = rt
        self._access = access

    async def publish(self, caller: Caller, request: PublishRequest) -> PublishResult:
        room = self._access.room(request.room)
        self._access.check_channel(caller, room)
        if caller.conn is None and not caller.is_server:  # REST: no membership to check
            await self._access.may_see(caller, room)
        return await self._rt.publisher.publish(Submission(
            room, request.event, request.data, request.meta, request.idempotency_key,
            caller.identity, caller.transport, caller.client_id, caller.ip,
            caller.member_of(room.id), caller.tools, caller.turn,
        ))

    async def publish_in(
        self, session: Any, request: PublishRequest, from_: str = "server"
    ) -> EventMessage | None:
        """Validated and run through middleware now, written into the caller's SQLAlchemy
        transaction; delivered by the outbox relay after it commits (None: dropped)."""
        rt = self._rt
        if rt.outbox is None:
            raise RuntimeError(
                "publish_in needs the SQL store: persistence='sqlite+aiosqlite:///file.db' "
                "or 'postgresql+asyncpg://...'"
            )
        room = self._access.room(request.room)
        message = await rt.publisher.prepare(Submission(
            room, request.event, request.data, request.meta,
            request.idempotency_key or "outbox-" + secrets.token_hex(12),
            Caller.server(from_).identity,
        ))
        if message is not None:
            await rt.outbox.add(session, message)
        return message

    async def trigger(self, request: PublishRequest, from_: str = "server") -> EventMessage:
        """The application's publish: validated like a client's, never rate limited."""
        outcome = await self.publish(Caller.server(from_), request)
        if outcome.message is None:  # dropped by a middleware: nothing was published
            return EventMessage(request.room, request.event, request.data, from_,
                                meta=dict(request.meta or {}))
        return outcome.message
