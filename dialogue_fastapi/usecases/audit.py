"""The facade's persistence helpers: times as ms, and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

from ..runtime import Runtime
from ..stores.base import AuditEntry, AuditQuery, AuditStore


def to_ms(value: datetime | int | None) -> int | None:
    """A datetime (naive means UTC) or ms since the epoch -> ms since the epoch."""
    if value is None or isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


async def audit(rt: Runtime, query: AuditQuery) -> list[AuditEntry]:
    store = rt.writer.store if rt.writer is not None else None
    if not isinstance(store, AuditStore):
        raise RuntimeError("audit() needs a store with an audit trail: set persistence=...")
    if query.outcome not in ("all", "accepted", "rejected"):
        raise ValueError("outcome must be 'all', 'accepted' or 'rejected'")
    return await store.audit(query)
