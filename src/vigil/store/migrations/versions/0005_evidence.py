"""The evidence vault: encrypted items, the custody chain, legal holds, reports to authorities.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from vigil.store.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _site_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites")


def upgrade() -> None:
    op.create_table(
        "evidence_items",
        sa.Column("id", sa.String(36)),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.String(36), nullable=False),
        sa.Column("uploader_id", sa.String(200)),
        sa.Column("cause", sa.String(20), nullable=False),
        sa.Column("file_path", sa.String(500)),
        sa.Column("key_id", sa.String(32)),
        sa.Column("wrapped_key", sa.String(200)),
        sa.Column("ciphertext_sha256", sa.String(64), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("image_format", sa.String(10), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("sha1", sa.String(40), nullable=False),
        sa.Column("pdq", JSON_DOCUMENT, nullable=False),
        sa.Column("matches", JSON_DOCUMENT, nullable=False),
        sa.Column("capture", JSON_DOCUMENT, nullable=False),
        sa.Column("exif", JSON_DOCUMENT, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("preserved_at", UTCDateTime(), nullable=False),
        sa.Column("preserved_by", sa.String(200), nullable=False),
        sa.Column("retain_until", UTCDateTime(), nullable=False),
        sa.Column("purged_at", UTCDateTime()),
        _site_key("evidence_items"),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name="fk_evidence_items_submission_id_submissions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_evidence_items"),
        sa.UniqueConstraint("submission_id", name="uq_evidence_items_submission_id"),
    )
    op.create_index("ix_evidence_items_site_uploader", "evidence_items", ["site_id", "uploader_id"])
    op.create_index("ix_evidence_items_sha256", "evidence_items", ["sha256"])
    op.create_index("ix_evidence_items_retain_until", "evidence_items", ["retain_until"])
    op.create_table(
        "custody_log",
        sa.Column("id", BIG_KEY, autoincrement=False),
        sa.Column("item_id", sa.String(36)),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("details", JSON_DOCUMENT, nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_custody_log"),
        sa.UniqueConstraint("entry_hash", name="uq_custody_log_entry_hash"),
    )
    op.create_index("ix_custody_log_item_id", "custody_log", ["item_id"])
    head = op.create_table(
        "custody_head",
        sa.Column("id", sa.Integer()),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_custody_head"),
    )
    # The head exists from the start, so the first two appends lock it rather than both insert it.
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": "0" * 64}])
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer()),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("case_name", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(200), nullable=False),
        sa.Column("placed_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime()),
        sa.Column("released_by", sa.String(200)),
        sa.Column("release_reason", sa.Text()),
        _site_key("legal_holds"),
        sa.PrimaryKeyConstraint("id", name="pk_legal_holds"),
    )
    op.create_table(
        "legal_hold_items",
        sa.Column("hold_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["legal_holds.id"],
            name="fk_legal_hold_items_hold_id_legal_holds",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["evidence_items.id"], name="fk_legal_hold_items_item_id_evidence_items"
        ),
        sa.PrimaryKeyConstraint("hold_id", "item_id", name="pk_legal_hold_items"),
    )
    op.create_table(
        "authority_reports",
        sa.Column("id", sa.Integer()),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("uploader_id", sa.String(200)),
        sa.Column("authority", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("environment", sa.String(20)),
        sa.Column("external_id", sa.String(100)),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("progress", JSON_DOCUMENT, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        _site_key("authority_reports"),
        sa.PrimaryKeyConstraint("id", name="pk_authority_reports"),
    )
    op.create_index("ix_authority_reports_due", "authority_reports", ["status", "next_attempt_at"])
    op.create_index("ix_authority_reports_uploader_id", "authority_reports", ["uploader_id"])
    op.create_table(
        "authority_report_items",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("external_file_id", sa.String(100)),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["authority_reports.id"],
            name="fk_authority_report_items_report_id_authority_reports",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["evidence_items.id"],
            name="fk_authority_report_items_item_id_evidence_items",
        ),
        sa.PrimaryKeyConstraint("report_id", "item_id", name="pk_authority_report_items"),
    )
    _make_custody_log_append_only()


def _make_custody_log_append_only() -> None:
    """The custody log is the evidence's history: the database itself refuses to edit it."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER custody_log_no_{verb.lower()} BEFORE {verb} ON custody_log "
                "BEGIN SELECT RAISE(ABORT, 'custody_log is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION vigil_refuse_custody_change() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'custody_log is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER custody_log_append_only "
            "BEFORE UPDATE OR DELETE OR TRUNCATE ON custody_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_custody_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS custody_log_append_only ON custody_log")
        op.execute("DROP FUNCTION IF EXISTS vigil_refuse_custody_change()")
    for table in (
        "authority_report_items",
        "authority_reports",
        "legal_hold_items",
        "legal_holds",
        "custody_head",
        "custody_log",
        "evidence_items",
    ):
        op.drop_table(table)
