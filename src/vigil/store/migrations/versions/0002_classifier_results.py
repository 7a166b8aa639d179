"""Classifier results, review priority and flags on submissions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(
            sa.Column("classifications", JSON_DOCUMENT, nullable=False, server_default="[]")
        )
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("flags", JSON_DOCUMENT, nullable=False, server_default="[]"))
    # The review queue is read by priority, then oldest first.
    op.create_index(
        "ix_submissions_review_priority",
        "submissions",
        ["review_state", "priority", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_submissions_review_priority", "submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("flags")
        batch.drop_column("priority")
        batch.drop_column("classifications")
