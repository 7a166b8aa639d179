"""Attack detection: site signals, lockdown states, community reports, incidents and pages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from vigil.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _site_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "site_signals",
        sa.Column("id", BIG_KEY),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("uploader_id", sa.String(200)),
        sa.Column("submission_id", sa.String(36)),
        sa.Column("pdq", sa.String(64)),
        sa.Column("value", sa.Float(), nullable=False),
        _site_key("site_signals"),
        sa.PrimaryKeyConstraint("id", name="pk_site_signals"),
    )
    op.create_index("ix_site_signals_site_kind_at", "site_signals", ["site_id", "kind", "at"])
    op.create_index("ix_site_signals_at", "site_signals", ["at"])
    op.create_table(
        "lockdown_states",
        sa.Column("site_id", sa.Integer()),
        sa.Column("automatic_level", sa.Integer(), nullable=False),
        sa.Column("automatic_since", UTCDateTime()),
        sa.Column("last_triggered_at", UTCDateTime()),
        sa.Column("automatic_cause", JSON_DOCUMENT, nullable=False),
        sa.Column("manual_level", sa.Integer()),
        sa.Column("manual_until", UTCDateTime()),
        sa.Column("manual_reason", sa.Text()),
        sa.Column("manual_by", sa.String(200)),
        sa.Column("counted_from", UTCDateTime()),
        sa.Column("announced_level", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _site_key("lockdown_states"),
        sa.PrimaryKeyConstraint("site_id", name="pk_lockdown_states"),
    )
    op.create_table(
        "reports",
        sa.Column("id", BIG_KEY),
        sa.Column("submission_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("reporter_id", sa.String(200), nullable=False),
        sa.Column("reporter_trust", sa.String(10)),
        sa.Column("reason", sa.String(30), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name="fk_reports_submission_id_submissions",
            ondelete="CASCADE",
        ),
        _site_key("reports"),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.UniqueConstraint("submission_id", "reporter_id", name="uq_reports_submission_reporter"),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer()),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("open_key", sa.String(100)),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("details", JSON_DOCUMENT, nullable=False),
        sa.Column("trigger_count", sa.Integer(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("last_triggered_at", UTCDateTime(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("next_tier_at", UTCDateTime()),
        sa.Column("ack_token", sa.String(64), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime()),
        sa.Column("acknowledged_by", sa.String(200)),
        sa.Column("resolved_at", UTCDateTime()),
        sa.Column("resolved_by", sa.String(200)),
        _site_key("incidents"),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
        sa.UniqueConstraint("open_key", name="uq_incidents_open_key"),
        sa.UniqueConstraint("ack_token", name="uq_incidents_ack_token"),
    )
    op.create_index("ix_incidents_next_tier_at", "incidents", ["next_tier_at"])
    op.create_table(
        "pages",
        sa.Column("id", BIG_KEY),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_pages_incident_id_incidents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_pages"),
    )
    op.create_index("ix_pages_due", "pages", ["status", "next_attempt_at"])
    op.create_index("ix_pages_incident_id", "pages", ["incident_id"])
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("hide_requested_at", UTCDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("hide_requested_at")
    op.drop_index("ix_pages_incident_id", "pages")
    op.drop_index("ix_pages_due", "pages")
    op.drop_table("pages")
    op.drop_index("ix_incidents_next_tier_at", "incidents")
    op.drop_table("incidents")
    op.drop_table("reports")
    op.drop_table("lockdown_states")
    op.drop_index("ix_site_signals_at", "site_signals")
    op.drop_index("ix_site_signals_site_kind_at", "site_signals")
    op.drop_table("site_signals")
