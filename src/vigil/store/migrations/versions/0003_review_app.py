"""The review app: users, login sessions, exposure counts, claims, suspended uploaders.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vigil.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer()),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("totp_secret", sa.String(64)),
        sa.Column("totp_last_step", sa.BigInteger()),
        sa.Column("show_images", sa.Boolean(), nullable=False, server_default="1"),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", UTCDateTime()),
        sa.Column("disabled_at", UTCDateTime()),
        sa.Column("last_login_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "login_sessions",
        sa.Column("token_hash", sa.String(64)),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_login_sessions_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_login_sessions"),
    )
    op.create_index("ix_login_sessions_user_id", "login_sessions", ["user_id"])
    op.create_table(
        "exposures",
        sa.Column("id", BIG_KEY),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.String(36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_exposures_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_exposures"),
    )
    op.create_index("ix_exposures_user_at", "exposures", ["user_id", "at"])
    op.create_table(
        "uploader_suspensions",
        sa.Column("id", sa.Integer()),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("uploader_id", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("suspended_by", sa.String(200), nullable=False),
        sa.Column("suspended_at", UTCDateTime(), nullable=False),
        sa.Column("lifted_at", UTCDateTime()),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name="fk_uploader_suspensions_site_id_sites",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_uploader_suspensions"),
        sa.UniqueConstraint("site_id", "uploader_id", name="uq_uploader_suspensions_site_uploader"),
    )
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(
            sa.Column("known_illegal", sa.Boolean(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("claimed_by", sa.Integer()))
        batch.add_column(sa.Column("claim_expires_at", UTCDateTime()))
        batch.create_foreign_key(
            "fk_submissions_claimed_by_users", "users", ["claimed_by"], ["id"], ondelete="SET NULL"
        )
    # The status page counts submissions per hour.
    op.create_index("ix_submissions_created_at", "submissions", ["created_at"])
    # Submissions a block bank matched before this column existed are known illegal too.
    submissions = sa.table(
        "submissions",
        sa.column("id", sa.String),
        sa.column("reasons", sa.JSON),
        sa.column("known_illegal", sa.Boolean),
    )
    connection = op.get_bind()
    blocked = connection.execute(
        sa.select(submissions.c.id, submissions.c.reasons).where(sa.text("decision = 'block'"))
    ).all()
    for submission_id, reasons in blocked:
        if any(
            reason.get("code") == "bank_match" and reason.get("verdict") == "block"
            for reason in reasons or []
        ):
            connection.execute(
                submissions.update()
                .where(submissions.c.id == submission_id)
                .values(known_illegal=True)
            )


def downgrade() -> None:
    op.drop_index("ix_submissions_created_at", "submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint("fk_submissions_claimed_by_users", type_="foreignkey")
        batch.drop_column("claim_expires_at")
        batch.drop_column("claimed_by")
        batch.drop_column("known_illegal")
    op.drop_table("uploader_suspensions")
    op.drop_index("ix_exposures_user_at", "exposures")
    op.drop_table("exposures")
    op.drop_index("ix_login_sessions_user_id", "login_sessions")
    op.drop_table("login_sessions")
    op.drop_table("users")
