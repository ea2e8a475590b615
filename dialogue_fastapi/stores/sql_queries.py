"""Statements and row conversions of the SQL store (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.sql.dml import Delete

from ..core.types import EventMessage
from .base import AuditEntry, AuditQuery, HistoryQuery, Rejection
from .sql_schema import Tables, utcnow


def event_rows(messages: list[EventMessage], epochs: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {"room": m.room, "seq": m.seq, "epoch": epochs.get(m.room, ""), "event": m.event,
         "data": m.data, "sender": m.from_, "meta": m.meta or None, "ts": m.ts,
         "idempotency_key": m.idempotency_key}
        for m in messages
    ]


def position_rows(messages: list[EventMessage], epochs: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per room: its highest seq in the batch; sorted by room so writers lock in order."""
    last: dict[str, int] = {}
    for m in messages:
        last[m.room] = max(m.seq, last.get(m.room, 0))
    now = utcnow()
    return [{"id": room, "last_seq": seq, "epoch": epochs.get(room, ""), "created_at": now,
             "updated_at": now} for room, seq in sorted(last.items())]


def message_from_row(row: Row[Any]) -> EventMessage:
    return EventMessage(
        room=row.room, event=row.event, data=row.data, from_=row.sender, ts=int(row.ts),
        seq=int(row.seq), meta=dict(row.meta or {}), idempotency_key=row.idempotency_key,
    )


def history_select(t: Tables, q: HistoryQuery) -> Select[Any]:
    """The page as a statement: newest first unless ``after`` pages forward (re-sort after)."""
    e = t.events.c
    where = [e.room == q.room]
    if q.before is not None:
        where.append(e.seq < q.before)
    if q.after is not None:
        where.append(e.seq > q.after)
    if q.event is not None:
        where.append(e.event == q.event)
    if q.events is not None:
        where.append(e.event.in_(sorted(q.events)))
    if q.exclude_events:
        where.append(e.event.not_in(sorted(q.exclude_events)))
    if q.sender is not None:
        where.append(e.sender == q.sender)
    if q.since_ts is not None:
        where.append(e.ts >= q.since_ts)
    if q.until_ts is not None:
        where.append(e.ts <= q.until_ts)
    order = e.seq.asc() if q.after is not None else e.seq.desc()
    return select(t.events).where(and_(*where)).order_by(order).limit(max(q.limit, 0))


def count_select(t: Tables, room: str | None) -> Select[Any]:
    """The number of stored events (of one room, or all)."""
    stmt = select(func.count()).select_from(t.events)
    return stmt if room is None else stmt.where(t.events.c.room == room)


def prune_events(
    t: Tables, room: str, keep_last: int | None, older_than: int | None, limit: int
) -> Delete:
    """Delete at most ``limit`` of the room's oldest doomed rows: one statement, a short
    transaction that writes first (SQLite never has to upgrade a read lock)."""
    e, r = t.events.c, t.rooms.c
    doomed = [e.room == room]
    rules = []
    if keep_last is not None:
        last = select(r.last_seq).where(r.id == room).scalar_subquery()
        rules.append(e.seq <= last - keep_last)
    if older_than is not None:
        rules.append(e.ts < older_than)
    doomed.append(or_(*rules))
    seqs = select(e.seq).where(and_(*doomed)).order_by(e.seq).limit(limit)
    return delete(t.events).where(e.room == room, e.seq.in_(seqs.scalar_subquery()))


def prune_audit(t: Tables, older_than: int, limit: int) -> Delete:
    a = t.audit.c
    ids = select(a.id).where(a.ts < older_than).order_by(a.id).limit(limit)
    return delete(t.audit).where(a.id.in_(ids.scalar_subquery()))


def rejection_rows(rejections: list[Rejection]) -> list[dict[str, Any]]:
    return [{"ts": r.ts, "room": r.room, "event": r.event, "sender": r.sender, "code": r.code,
             "reason": r.reason, "data": r.data, "meta": r.meta or None} for r in rejections]


def audit_selects(t: Tables, q: AuditQuery) -> list[tuple[bool, Select[Any]]]:
    """(accepted?, statement) for the outcomes asked, each newest first."""
    found: list[tuple[bool, Select[Any]]] = []
    for accepted, table in ((True, t.events), (False, t.audit)):
        if q.outcome not in ("all", "accepted" if accepted else "rejected"):
            continue
        c = table.c
        where = []
        if q.room is not None:
            where.append(c.room == q.room)
        if q.event is not None:
            where.append(c.event == q.event)
        if q.sender is not None:
            where.append(c.sender == q.sender)
        if q.since_ts is not None:
            where.append(c.ts >= q.since_ts)
        if q.until_ts is not None:
            where.append(c.ts <= q.until_ts)
        tie = c.seq.desc() if accepted else c.id.desc()
        found.append((accepted, select(table).where(and_(True, *where))
                      .order_by(c.ts.desc(), tie).limit(max(q.limit, 0))))
    return found


def audit_entry(accepted: bool, row: Row[Any]) -> AuditEntry:
    if accepted:
        return AuditEntry(int(row.ts), row.room, row.event, row.sender, True, seq=int(row.seq),
                          meta=dict(row.meta or {}), data=row.data)
    return AuditEntry(int(row.ts), row.room, row.event, row.sender, False, code=row.code,
                      reason=row.reason, meta=dict(row.meta or {}), data=row.data)
