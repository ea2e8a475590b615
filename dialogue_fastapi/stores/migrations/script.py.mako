"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Table names start with the store's prefix: use ``p = context.get_tag_argument()``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    p = context.get_tag_argument() or "dialogue_"
    ${downgrades if downgrades else "pass"}
