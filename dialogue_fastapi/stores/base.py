"""The EventStore seam: durable events beyond the broker's hot window.

A store must implement :class:`EventStore`. The optional capabilities
(:class:`RoomStore`, :class:`PrunableStore`, :class:`AuditStore`) turn on
runtime rooms and room state that survive restarts, retention, and the audit
trail; a store without them still gives history, replay and restart
continuity. ``dialogue_fastapi.testing.EventStoreContract`` checks all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..core.types import EventMessage, Position


class PermanentStoreError(Exception):
    """Raised by a store for data it will never accept (retrying cannot help).

    The write-behind queue then writes the batch one event at a time and drops
    (loudly) only the event that fails on its own; any other exception counts
    as the database being unreachable and the batch is retried.
    """


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A page of a room's events; ``after`` pages forward, ``before`` backward.

    ``events`` keeps only these event names, ``exclude_events`` drops these;
    ``since_ts``/``until_ts`` bound ``ts`` (inclusive, ms since the epoch).
    """

    room: str
    limit: int = 50
    before: int | None = None
    after: int | None = None
    event: str | None = None
    sender: str | None = None
    since_ts: int | None = None
    until_ts: int | None = None
    events: frozenset[str] | None = None
    exclude_events: frozenset[str] = frozenset()


def matches(message: EventMessage, query: HistoryQuery) -> bool:
    """True if ``message`` is in ``query`` (ignoring the limit): the reference filter."""
    if message.room != query.room:
        return False
    if query.before is not None and message.seq >= query.before:
        return False
    if query.after is not None and message.seq <= query.after:
        return False
    if query.event is not None and message.event != query.event:
        return False
    if query.events is not None and message.event not in query.events:
        return False
    if message.event in query.exclude_events:
        return False
    if query.sender is not None and message.from_ != query.sender:
        return False
    if query.since_ts is not None and message.ts < query.since_ts:
        return False
    return query.until_ts is None or message.ts <= query.until_ts


def page_of(found: list[EventMessage], query: HistoryQuery) -> list[EventMessage]:
    """Ascending, deduplicated by seq, cut to the query's limit (first N after ``after``, else newest N)."""
    unique = sorted({m.seq: m for m in found}.values(), key=lambda m: m.seq)
    if query.limit <= 0:
        return []
    return unique[: query.limit] if query.after is not None else unique[-query.limit:]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A publish the pipeline refused (recorded when ``audit_rejections=True``)."""

    room: str
    event: str
    sender: str
    ts: int
    code: str
    reason: str
    data: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Audit entries by room, event, sender and time range (ms); newest ``limit``.

    ``outcome``: ``"accepted"`` (stored events), ``"rejected"`` or ``"all"``.
    """

    room: str | None = None
    event: str | None = None
    sender: str | None = None
    since_ts: int | None = None
    until_ts: int | None = None
    outcome: str = "all"
    limit: int = 100


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what, where and when; ``seq`` for accepted events, ``code``/``reason`` for refusals."""

    ts: int
    room: str
    event: str
    sender: str
    accepted: bool
    seq: int | None = None
    code: str | None = None
    reason: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    data: Any = None


@runtime_checkable
class EventStore(Protocol):
    """Stores events and answers history queries. Implementations: memory, SQL, yours."""

    async def start(self) -> None:
        """Open connections, create what is missing."""
        ...

    async def stop(self) -> None:
        """Close; the store may be started again."""
        ...

    async def append(self, messages: list[EventMessage], epochs: Mapping[str, str]) -> None:
        """Store events (numbered by the broker; ``epochs`` by room) and each room's
        last position, in one transaction; idempotent per (room, seq)."""
        ...

    async def query(self, query: HistoryQuery) -> list[EventMessage]:
        """Events matching the query (see :func:`matches`), ascending seq."""
        ...

    async def read_after(self, room: str, after: int, limit: int) -> list[EventMessage]:
        """Up to ``limit`` events with seq > after, ascending, with no filter."""
        ...

    async def positions(self) -> dict[str, Position]:
        """The last stored position of every room, to continue from after a restart."""
        ...

    async def delete_room(self, room: str) -> None:
        """Forget the room: its events, position, state and runtime spec."""
        ...


@runtime_checkable
class RoomStore(Protocol):
    """Optional: runtime rooms and room state that survive restarts."""

    async def save_room(self, room: str, spec: dict[str, Any]) -> None:
        """Record a runtime room's spec (JSON)."""
        ...

    async def load_rooms(self) -> dict[str, dict[str, Any]]:
        """Every runtime room's spec, by id."""
        ...

    async def set_state(self, room: str, state: Any) -> None:
        """Replace the room's state (any JSON)."""
        ...

    async def get_state(self, room: str) -> Any:
        """The room's state, or None."""
        ...


@runtime_checkable
class PrunableStore(Protocol):
    """Optional: retention. Each call deletes at most ``limit`` rows (short transactions)."""

    async def prune(
        self, room: str, *, keep_last: int | None, older_than: int | None, limit: int
    ) -> int:
        """Delete the room's events below its newest ``keep_last`` seqs or with ts < ``older_than``."""
        ...

    async def prune_rejections(self, older_than: int, limit: int) -> int:
        """Delete recorded rejections with ts < ``older_than``."""
        ...


@runtime_checkable
class AuditStore(Protocol):
    """Optional: the audit trail (accepted events are the stored events)."""

    async def record_rejections(self, rejections: list[Rejection]) -> None:
        """Store refused publishes."""
        ...

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Accepted and/or rejected entries matching the query, ascending ts."""
        ...


@runtime_checkable
class DeadLetterStore(Protocol):
    """Optional: a place for events the store refused as data (instead of dropping them)."""

    async def record_dead_letter(self, message: EventMessage, epoch: str | None, error: str) -> None:
        """Keep a refused event with the error; raise :class:`PermanentStoreError` if it cannot be kept."""
        ...

    async def count_dead_letters(self) -> int:
        """How many dead letters are kept."""
        ...


@runtime_checkable
class SingleWriterStore(Protocol):
    """Optional: an embedded store that can refuse a second process on the same database."""

    def require_single_writer(self) -> None:
        """Before ``start``: no other process shares this node's broker, so ``start`` must
        fail if another process already uses the database (and change nothing)."""
        ...
