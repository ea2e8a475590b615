"""The SQL store's tables: their own ``MetaData`` (per table prefix) with a naming convention.

Every table and constraint name starts with the prefix (``dialogue_`` by
default) so the library's schema never collides with the application's,
and it has its own Alembic version table (``<prefix>alembic_version``).
``SCHEMA_REVISION`` is the Alembic revision these definitions correspond to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

SCHEMA_REVISION = "r0004"
DEFAULT_PREFIX = "dialogue_"
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,23}$")

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



class SQLiteJSON(TypeDecorator[Any]):
    """JSON in a TEXT column: SQLite's "JSON" column has numeric affinity and turns '42' into 42."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else orjson.loads(value)


JSONValue = JSON().with_variant(JSONB(), "postgresql").with_variant(SQLiteJSON(), "sqlite")
# an autoincrementing 64-bit id: SQLite only autoincrements "INTEGER PRIMARY KEY"
RowId = BigInteger().with_variant(Integer(), "sqlite")
TEXT_ID = 1024  # room ids and user ids


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone: normalise on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Tables:
    """The library's tables under one prefix."""

    prefix: str
    metadata: MetaData
    events: Table
    rooms: Table
    push_registrations: Table
    audit: Table
    outbox: Table
    meta: Table
    dead_letters: Table
    push_rooms: Table
    push_outbox: Table
    push_sent: Table
    push_preferences: Table
    version_table: str

    def names(self) -> list[str]:
        return [t.name for t in self.metadata.sorted_tables] + [self.version_table]


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"table prefix {prefix!r}: use 1-24 lowercase letters, digits and _ (start with a letter)"
        )
    return prefix


def build_tables(prefix: str = DEFAULT_PREFIX) -> Tables:
    """The tables, in a fresh ``MetaData``, named ``<prefix>events`` and so on."""
    p = check_prefix(prefix)
    md = MetaData(naming_convention=NAMING_CONVENTION)
    events, rooms = _event_tables(md, p)
    push, audit, outbox, meta = _other_tables(md, p)
    push_rooms, push_outbox, push_sent = _push_tables(md, p)
    return Tables(p, md, events, rooms, push, audit, outbox, meta, _dead_letters(md, p),
                  push_rooms, push_outbox, push_sent, _push_preferences(md, p),
                  f"{p}alembic_version")


def _event_tables(md: MetaData, p: str) -> tuple[Table, Table]:
    events = Table(
        f"{p}events", md,
        Column("room", String(TEXT_ID), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("epoch", String(64), nullable=False),
        Column("event", String(128), nullable=False),
        Column("data", JSONValue),
        Column("sender", String(TEXT_ID), nullable=False),
        Column("meta", JSONValue),
        Column("ts", BigInteger, nullable=False),
        Column("idempotency_key", String(255)),
        PrimaryKeyConstraint("room", "seq"),
        Index(None, "room", "ts"),
        Index(None, "room", "sender", "idempotency_key",
              postgresql_where=text("idempotency_key IS NOT NULL"),
              sqlite_where=text("idempotency_key IS NOT NULL")),
    )
    rooms = Table(
        f"{p}rooms", md,
        Column("id", String(TEXT_ID), primary_key=True),
        Column("epoch", String(64)),
        Column("last_seq", BigInteger, nullable=False, server_default="0"),
        Column("spec", JSONValue),  # runtime rooms only
        Column("created_by", String(TEXT_ID)),
        Column("state", JSONValue),
        Column("created_at", UTCDateTime, nullable=False, default=utcnow),
        Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
    )
    return events, rooms


def _other_tables(md: MetaData, p: str) -> tuple[Table, Table, Table, Table]:
    push = Table(
        f"{p}push_registrations", md,
        Column("id", String(64), primary_key=True),
        Column("user_id", String(TEXT_ID), nullable=False, index=True),
        Column("kind", String(16), nullable=False),
        Column("address", Text, nullable=False),
        Column("keys", JSONValue),
        Column("rooms", JSONValue),
        Column("created_at", UTCDateTime, nullable=False, default=utcnow),
        Column("last_used_at", UTCDateTime),  # the last successful send
        Column("failures", Integer, nullable=False, default=0, server_default="0"),
        UniqueConstraint("kind", "address"),
    )
    audit = Table(
        f"{p}audit", md,
        Column("id", RowId, primary_key=True, autoincrement=True),
        Column("ts", BigInteger, nullable=False, index=True),
        Column("room", String(TEXT_ID), nullable=False),
        Column("event", String(128), nullable=False),
        Column("sender", String(TEXT_ID), nullable=False),
        Column("code", String(32), nullable=False),
        Column("reason", Text, nullable=False),
        Column("data", JSONValue),
        Column("meta", JSONValue),
        Index(None, "room", "ts"),
    )
    outbox = Table(
        f"{p}outbox", md,
        Column("id", RowId, primary_key=True, autoincrement=True),
        Column("room", String(TEXT_ID), nullable=False),
        Column("event", String(128), nullable=False),
        Column("data", JSONValue),
        Column("sender", String(TEXT_ID), nullable=False),
        Column("meta", JSONValue),
        Column("ts", BigInteger, nullable=False),
        Column("idempotency_key", String(255), nullable=False),
        Column("claimed_at", BigInteger),
        Column("delivered_at", BigInteger),
        Column("seq", BigInteger),
        UniqueConstraint("room", "sender", "idempotency_key"),
        Index(None, "delivered_at", "id"),
    )
    meta = Table(f"{p}meta", md, Column("key", String(64), primary_key=True),
                 Column("value", Text, nullable=False))
    return push, audit, outbox, meta


def _dead_letters(md: MetaData, p: str) -> Table:
    """Events the database refused as data: kept as text (NULs escaped) to inspect or replay."""
    return Table(
        f"{p}dead_letters", md,
        Column("id", RowId, primary_key=True, autoincrement=True),
        Column("room", Text, nullable=False),
        Column("seq", BigInteger),  # None: out of the 64-bit range
        Column("epoch", String(64)),
        Column("event", Text, nullable=False),
        Column("sender", Text, nullable=False),
        Column("ts", BigInteger),
        Column("error", Text, nullable=False),
        Column("message", Text, nullable=False),  # the whole event as JSON text
        Column("created_at", UTCDateTime, nullable=False, default=utcnow, index=True),
    )


def _push_tables(md: MetaData, p: str) -> tuple[Table, Table, Table]:
    """Push: the rooms each registration asked for, the outbox of notifications to send (one row
    per event, written with the event) and the sends already done (one row per event and device)."""
    push_rooms = Table(
        f"{p}push_rooms", md,
        Column("registration_id", String(64), primary_key=True),
        Column("room", String(TEXT_ID), primary_key=True),
        Index(None, "room"),
    )
    push_outbox = Table(
        f"{p}push_outbox", md,
        Column("id", RowId, primary_key=True, autoincrement=True),
        Column("room", String(TEXT_ID), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("event", String(128), nullable=False),
        Column("sender", String(TEXT_ID), nullable=False),
        Column("notification", JSONValue, nullable=False),
        Column("due_at", BigInteger, nullable=False),  # ms: the event's ts plus the grace period
        Column("claimed_by", String(64)),
        Column("claimed_until", BigInteger),
        Column("attempts", Integer, nullable=False, default=0, server_default="0"),
        UniqueConstraint("room", "seq"),
        Index(None, "due_at"),
    )
    push_sent = Table(
        f"{p}push_sent", md,
        Column("outbox_id", RowId, primary_key=True),
        Column("registration_id", String(64), primary_key=True),
        Column("sent_at", BigInteger, nullable=False),
    )
    return push_rooms, push_outbox, push_sent


def _push_preferences(md: MetaData, p: str) -> Table:
    """Each user's quiet hours (``HH:MM`` to ``HH:MM`` in an IANA zone) and muted rooms."""
    return Table(
        f"{p}push_preferences", md,
        Column("user_id", String(TEXT_ID), primary_key=True),
        Column("quiet_start", String(5)),  # None: no quiet hours
        Column("quiet_end", String(5)),
        Column("tz", String(64)),
        Column("muted", JSONValue),  # room ids
        Column("updated_at", UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow),
    )
