"""The facade's persistence operations: transactional publish and the audit trail."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from .runtime import Runtime
from .stores.base import AuditEntry, AuditQuery, AuditStore
from .types import EventMessage, Identity


def to_ms(value: datetime | int | None) -> int | None:
    """A datetime (naive means UTC) or ms since the epoch -> ms since the epoch."""
    if value is None or isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


async def publish_in(
    rt: Runtime, session: Any, room_id: str, event: str, data: Any, *, from_: str,
    meta: dict[str, Any] | None, idempotency_key: str | None,
) -> EventMessage | None:
    if rt.outbox is None:
        raise RuntimeError(
            "publish_in needs the SQL store: persistence='sqlite+aiosqlite:///file.db' "
            "or 'postgresql+asyncpg://...'"
        )
    room = rt.registry.get(room_id)
    identity = None if from_ == "server" else Identity(from_)
    message = await rt.publisher.prepare(
        room, event, data, identity=identity, meta=meta,
        idempotency_key=idempotency_key or "outbox-" + secrets.token_hex(12),
    )
    if message is None:
        return None
    await rt.outbox.add(session, message)
    return message


async def audit(rt: Runtime, query: AuditQuery) -> list[AuditEntry]:
    store = rt.writer.store if rt.writer is not None else None
    if not isinstance(store, AuditStore):
        raise RuntimeError("audit() needs a store with an audit trail: set persistence=...")
    if query.outcome not in ("all", "accepted", "rejected"):
        raise ValueError("outcome must be 'all', 'accepted' or 'rejected'")
    return await store.audit(query)
