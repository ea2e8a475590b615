"""Push: failure counts of registrations, the rooms each asked for, the push outbox and its sends.

Revision ID: r0003
Revises: r0002

Registrations that exist keep everything; the rooms listed in their ``rooms`` JSON are
copied into ``push_rooms`` (the index the dispatcher looks rooms up in).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSON in a TEXT column on SQLite, as r0001 (its "JSON" columns have numeric affinity)
JSON = sa.JSON().with_variant(JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    op.add_column(f"{p}push_registrations",
                  sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        f"{p}push_rooms",
        sa.Column("registration_id", sa.String(64), nullable=False),
        sa.Column("room", sa.String(1024), nullable=False),
        sa.PrimaryKeyConstraint("registration_id", "room", name=f"pk_{p}push_rooms"),
    )
    op.create_index(f"ix_{p}push_rooms_room", f"{p}push_rooms", ["room"])
    op.create_table(
        f"{p}push_outbox",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("room", sa.String(1024), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("sender", sa.String(1024), nullable=False),
        sa.Column("notification", JSON, nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_until", sa.BigInteger()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}push_outbox"),
        sa.UniqueConstraint("room", "seq", name=f"uq_{p}push_outbox_room_seq"),
    )
    op.create_index(f"ix_{p}push_outbox_due_at", f"{p}push_outbox", ["due_at"])
    op.create_table(
        f"{p}push_sent",
        sa.Column("outbox_id", ROW_ID, nullable=False),
        sa.Column("registration_id", sa.String(64), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("outbox_id", "registration_id", name=f"pk_{p}push_sent"),
    )
    _copy_rooms(p)


def _copy_rooms(p: str) -> None:
    registrations = sa.table(f"{p}push_registrations", sa.column("id"), sa.column("rooms", JSON))
    push_rooms = sa.table(f"{p}push_rooms", sa.column("registration_id"), sa.column("room"))
    bind = op.get_bind()
    rows = []
    for reg_id, rooms in bind.execute(sa.select(registrations.c.id, registrations.c.rooms)):
        if isinstance(rooms, str):  # a JSON column read without its type on some drivers
            rooms = json.loads(rooms)
        for room in dict.fromkeys(rooms or ()):
            if isinstance(room, str):
                rows.append({"registration_id": reg_id, "room": room})
    if rows:
        bind.execute(push_rooms.insert(), rows)


def downgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    op.drop_table(f"{p}push_sent")
    op.drop_index(f"ix_{p}push_outbox_due_at", table_name=f"{p}push_outbox")
    op.drop_table(f"{p}push_outbox")
    op.drop_index(f"ix_{p}push_rooms_room", table_name=f"{p}push_rooms")
    op.drop_table(f"{p}push_rooms")
    with op.batch_alter_table(f"{p}push_registrations") as batch:
        batch.drop_column("failures")
