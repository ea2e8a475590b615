"""Push preferences: each user's quiet hours and muted rooms.

Revision ID: r0004
Revises: r0003

A new table only; registrations and the push outbox are untouched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None

# JSON in a TEXT column on SQLite, as r0001 (its "JSON" columns have numeric affinity)
JSON = sa.JSON().with_variant(JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    op.create_table(
        f"{p}push_preferences",
        sa.Column("user_id", sa.String(1024), nullable=False),
        sa.Column("quiet_start", sa.String(5)),
        sa.Column("quiet_end", sa.String(5)),
        sa.Column("tz", sa.String(64)),
        sa.Column("muted", JSON),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=f"pk_{p}push_preferences"),
    )


def downgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    op.drop_table(f"{p}push_preferences")
