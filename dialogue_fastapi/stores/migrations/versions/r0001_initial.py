"""The initial schema: events, rooms, push registrations, audit, outbox, meta.

Revision ID: r0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None

# JSON in a TEXT column on SQLite (its "JSON" columns have numeric affinity)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    op.create_table(
        f"{p}events",
        sa.Column("room", sa.String(1024), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.String(64), nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("data", JSON),
        sa.Column("sender", sa.String(1024), nullable=False),
        sa.Column("meta", JSON),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(255)),
        sa.PrimaryKeyConstraint("room", "seq", name=f"pk_{p}events"),
    )
    op.create_index(f"ix_{p}events_room_ts", f"{p}events", ["room", "ts"])
    op.create_index(f"ix_{p}events_room_sender_idempotency_key", f"{p}events",
                    ["room", "sender", "idempotency_key"],
                    postgresql_where=sa.text("idempotency_key IS NOT NULL"),
                    sqlite_where=sa.text("idempotency_key IS NOT NULL"))
    op.create_table(
        f"{p}rooms",
        sa.Column("id", sa.String(1024), nullable=False),
        sa.Column("epoch", sa.String(64)),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("spec", JSON),
        sa.Column("created_by", sa.String(1024)),
        sa.Column("state", JSON),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}rooms"),
    )
    _push_and_meta(p)
    _audit_and_outbox(p)


def _push_and_meta(p: str) -> None:
    op.create_table(
        f"{p}push_registrations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("keys", JSON),
        sa.Column("rooms", JSON),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}push_registrations"),
        sa.UniqueConstraint("kind", "address", name=f"uq_{p}push_registrations_kind_address"),
    )
    op.create_index(f"ix_{p}push_registrations_user_id", f"{p}push_registrations", ["user_id"])
    op.create_table(
        f"{p}meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=f"pk_{p}meta"),
    )


def _audit_and_outbox(p: str) -> None:
    op.create_table(
        f"{p}audit",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("room", sa.String(1024), nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("sender", sa.String(1024), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("data", JSON),
        sa.Column("meta", JSON),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}audit"),
    )
    op.create_index(f"ix_{p}audit_ts", f"{p}audit", ["ts"])
    op.create_index(f"ix_{p}audit_room_ts", f"{p}audit", ["room", "ts"])
    op.create_table(
        f"{p}outbox",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("room", sa.String(1024), nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("data", JSON),
        sa.Column("sender", sa.String(1024), nullable=False),
        sa.Column("meta", JSON),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("claimed_at", sa.BigInteger()),
        sa.Column("delivered_at", sa.BigInteger()),
        sa.Column("seq", sa.BigInteger()),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}outbox"),
        sa.UniqueConstraint("room", "sender", "idempotency_key",
                            name=f"uq_{p}outbox_room_sender_idempotency_key"),
    )
    op.create_index(f"ix_{p}outbox_delivered_at_id", f"{p}outbox", ["delivered_at", "id"])


def downgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    for table in ("meta", "outbox", "audit", "push_registrations", "rooms", "events"):
        op.drop_table(f"{p}{table}")
