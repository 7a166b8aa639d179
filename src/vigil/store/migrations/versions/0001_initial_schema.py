"""Initial schema: sites and keys, banks, submissions, the audit log and the webhook outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from vigil.store.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _created_at() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", UTCDateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("webhook_url", sa.String(2000)),
        sa.Column("webhook_secret", sa.String(200)),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
        sa.UniqueConstraint("name", name="uq_sites_name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer()),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False),
        _created_at(),
        sa.Column("revoked_at", UTCDateTime()),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_api_keys_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_table(
        "banks",
        sa.Column("id", sa.Integer()),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("hash_type", sa.String(10), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("hash_count", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_banks"),
        sa.UniqueConstraint("name", name="uq_banks_name"),
    )
    op.create_table(
        "bank_hashes",
        sa.Column("id", BIG_KEY),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name="fk_bank_hashes_bank_id_banks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bank_hashes"),
        sa.UniqueConstraint("bank_id", "value", name="uq_bank_hashes_bank_value"),
    )
    op.create_index("ix_bank_hashes_value", "bank_hashes", ["value"])
    op.create_table(
        "bank_generation",
        sa.Column("id", sa.Integer()),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bank_generation"),
    )
    op.execute("INSERT INTO bank_generation (id, generation) VALUES (1, 0)")
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(36)),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("uploader_id", sa.String(200)),
        sa.Column("ref", sa.String(200)),
        sa.Column("context", JSON_DOCUMENT, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("sha1", sa.String(40), nullable=False),
        sa.Column("pdq", JSON_DOCUMENT, nullable=False),
        sa.Column("image_format", sa.String(10), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("frame_count", sa.Integer(), nullable=False),
        sa.Column("frames_screened", sa.Integer(), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("initial_decision", sa.String(10), nullable=False),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("reasons", JSON_DOCUMENT, nullable=False),
        sa.Column("review_state", sa.String(10), nullable=False),
        sa.Column("image_path", sa.String(500)),
        _created_at(),
        sa.Column("decided_at", UTCDateTime()),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("decision_note", sa.Text()),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name="fk_submissions_site_id_sites"),
        sa.PrimaryKeyConstraint("id", name="pk_submissions"),
        sa.UniqueConstraint("site_id", "idempotency_key", name="uq_submissions_site_idempotency"),
    )
    op.create_index("ix_submissions_review_created", "submissions", ["review_state", "created_at"])
    op.create_index("ix_submissions_sha256", "submissions", ["sha256"])
    op.create_index("ix_submissions_uploader_id", "submissions", ["uploader_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_KEY),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("details", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])
    _make_audit_log_append_only()
    op.create_table(
        "webhook_outbox",
        sa.Column("id", BIG_KEY),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(50), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _created_at(),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("delivered_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_webhook_outbox_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_outbox"),
        sa.UniqueConstraint("event_id", name="uq_webhook_outbox_event_id"),
    )
    op.create_index("ix_webhook_outbox_due", "webhook_outbox", ["status", "next_attempt_at"])


def _make_audit_log_append_only() -> None:
    """The audit log is evidence of who decided what: the database itself refuses to edit it."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION vigil_refuse_audit_change() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_audit_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS vigil_refuse_audit_change()")
    for table in (
        "webhook_outbox",
        "audit_log",
        "submissions",
        "bank_generation",
        "bank_hashes",
        "banks",
        "api_keys",
        "sites",
    ):
        op.drop_table(table)
