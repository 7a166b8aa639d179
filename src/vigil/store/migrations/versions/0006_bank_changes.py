"""Bank entries carry the generation that added them, and removals are logged, so each process
can bring its PDQ index up to date with what changed instead of rebuilding it. The database gets
an identity, so a saved index is only ever used with the database it was built from.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

from vigil.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("bank_generation", sa.Column("database_id", sa.String(36)))
    op.execute(
        sa.text("UPDATE bank_generation SET database_id = :identity").bindparams(
            identity=str(uuid.uuid4())
        )
    )
    # Entries from before this version count as added at generation 0: every index built from
    # now on holds them.
    op.add_column(
        "bank_hashes",
        sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_bank_hashes_generation", "bank_hashes", ["generation"])
    op.create_table(
        "bank_hash_removals",
        sa.Column("id", BIG_KEY),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("added_generation", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"],
            ["banks.id"],
            name="fk_bank_hash_removals_bank_id_banks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bank_hash_removals"),
    )
    op.create_index("ix_bank_hash_removals_generation", "bank_hash_removals", ["generation"])


def downgrade() -> None:
    op.drop_table("bank_hash_removals")
    op.drop_index("ix_bank_hashes_generation", table_name="bank_hashes")
    with op.batch_alter_table("bank_hashes") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("bank_generation") as batch:
        batch.drop_column("database_id")
