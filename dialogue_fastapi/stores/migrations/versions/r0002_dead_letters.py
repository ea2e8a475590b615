"""Dead letters: events the database refused as data, kept aside instead of blocking the writer.

Revision ID: r0002
Revises: r0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    op.create_table(
        f"{p}dead_letters",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger()),
        sa.Column("epoch", sa.String(64)),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("ts", sa.BigInteger()),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}dead_letters"),
    )
    op.create_index(f"ix_{p}dead_letters_created_at", f"{p}dead_letters", ["created_at"])


def downgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    op.drop_index(f"ix_{p}dead_letters_created_at", table_name=f"{p}dead_letters")
    op.drop_table(f"{p}dead_letters")
