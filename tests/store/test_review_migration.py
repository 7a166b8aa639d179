"""Migration 0003 (the review app) on a database that already holds screenings: submissions a
block bank matched become known illegal, nothing else does; it downgrades and upgrades again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, bindparam, inspect, text

from vigil.store.database import Database, alembic_config
from vigil.store.models import Base, Submission
from vigil.store.types import UTCDateTime

CREATED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

BANK_BLOCK = {
    "code": "bank_match",
    "verdict": "block",
    "message": "matched bank 'known-bad' (exact sha256)",
    "bank": "known-bad",
    "action": "block",
    "hash_type": "sha256",
    "hash": "ab" * 32,
    "entry": "ab" * 32,
    "distance": 0,
    "frame": None,
}
BANK_HOLD = {**BANK_BLOCK, "verdict": "hold", "action": "hold", "bank": "review"}
CLASSIFIER_BLOCK = {
    "code": "classifier_label",
    "verdict": "block",
    "message": "opennsfw scored nsfw 0.99",
    "model": "opennsfw",
    "label": "nsfw",
    "score": 0.99,
}
NEW_UPLOADER = {
    "code": "new_uploader",
    "verdict": "hold",
    "message": "images from new accounts are held for review",
}

# id -> (initial decision, decision, review state, reasons, known illegal after the migration)
ROWS: dict[str, tuple[str, str, str, list[dict[str, Any]], bool]] = {
    "bank-blocked": ("block", "block", "none", [BANK_BLOCK], True),
    # A block bank among other reasons still makes it known illegal.
    "bank-and-classifier": ("block", "block", "none", [CLASSIFIER_BLOCK, BANK_BLOCK], True),
    "classifier-blocked": ("block", "block", "none", [CLASSIFIER_BLOCK], False),
    "held": ("hold", "hold", "pending", [NEW_UPLOADER], False),
    # A hold bank's match a moderator then rejected: blocked, but not by a block bank.
    "hold-bank-rejected": ("hold", "block", "decided", [BANK_HOLD], False),
    "allowed": ("allow", "allow", "none", [], False),
}


# The newest migration: later ones apply on top of 0003 and must not disturb what it did.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database (nothing migrated yet)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'vigil.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Database(url)
    yield db
    db.dispose()


def _to(database: Database, revision: str, *, down: bool = False) -> None:
    with database.engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def _revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _insert_rows_at_0002(connection: Connection) -> None:
    connection.execute(
        text("INSERT INTO sites (id, name, created_at) VALUES (1, 'default', :at)").bindparams(
            bindparam("at", type_=UTCDateTime())
        ),
        {"at": CREATED},
    )
    cast = "CAST({} AS JSONB)" if connection.dialect.name == "postgresql" else "{}"
    statement = text(
        "INSERT INTO submissions (id, site_id, uploader_id, ref, context, sha256, md5, sha1, pdq, "
        "image_format, width, height, frame_count, frames_screened, byte_size, "
        "initial_decision, decision, reasons, review_state, image_path, created_at, "
        "classifications, priority, flags) VALUES (:id, 1, 'u1', :ref, "
        f"{cast.format(':context')}, :sha256, :md5, :sha1, {cast.format(':pdq')}, "
        "'JPEG', 400, 300, 1, 1, 1234, :initial, :decision, "
        f"{cast.format(':reasons')}, :review, NULL, :created_at, "
        f"{cast.format(':classifications')}, 0, {cast.format(':flags')})"
    ).bindparams(bindparam("created_at", type_=UTCDateTime()))
    for number, (submission_id, (initial, decision, review, reasons, _)) in enumerate(ROWS.items()):
        connection.execute(
            statement,
            {
                "id": submission_id,
                "ref": f"post-{number}",
                "context": json.dumps({"uploader_id": "u1"}),
                "sha256": f"{number:064x}",
                "md5": f"{number:032x}",
                "sha1": f"{number:040x}",
                "pdq": json.dumps([{"frame": 0, "hash": "cd" * 32, "quality": 100}]),
                "initial": initial,
                "decision": decision,
                "reasons": json.dumps(reasons),
                "review": review,
                "created_at": CREATED,
                "classifications": "[]",
                "flags": "[]",
            },
        )


def _known_illegal(database: Database) -> dict[str, bool]:
    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, known_illegal FROM submissions")).all()
    return {submission_id: bool(value) for submission_id, value in rows}


def _columns(database: Database, table: str) -> set[str]:
    return {column["name"] for column in inspect(database.engine).get_columns(table)}


def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names())


EXPECTED = {submission_id: row[4] for submission_id, row in ROWS.items()}


def test_the_review_migration_marks_bank_blocked_submissions_known_illegal(
    database: Database,
) -> None:
    _to(database, "0002")
    assert _revision(database) == "0002"
    assert "known_illegal" not in _columns(database, "submissions")
    with database.engine.begin() as connection:
        _insert_rows_at_0002(connection)

    _to(database, "head")

    assert _revision(database) == HEAD
    assert _known_illegal(database) == EXPECTED
    # The rows read back through the models as the app reads them.
    with database.session() as session:
        loaded = {row.id: row for row in session.query(Submission)}
    assert {key: row.known_illegal for key, row in loaded.items()} == EXPECTED
    assert loaded["bank-blocked"].reasons == [BANK_BLOCK]
    assert loaded["held"].claimed_by is None
    assert loaded["held"].claim_expires_at is None
    assert loaded["held"].created_at == CREATED


def test_the_review_migration_downgrades_and_upgrades_again(database: Database) -> None:
    _to(database, "0002")
    with database.engine.begin() as connection:
        _insert_rows_at_0002(connection)
    _to(database, "head")

    _to(database, "0002", down=True)

    assert _revision(database) == "0002"
    assert {"known_illegal", "claimed_by", "claim_expires_at"}.isdisjoint(
        _columns(database, "submissions")
    )
    assert {"users", "login_sessions", "exposures", "uploader_suspensions"}.isdisjoint(
        _tables(database)
    )
    with database.engine.connect() as connection:
        kept = connection.execute(text("SELECT id, decision FROM submissions")).all()
    assert {submission_id: decision for submission_id, decision in kept} == {
        submission_id: row[1] for submission_id, row in ROWS.items()
    }

    _to(database, "head")

    assert _revision(database) == HEAD
    assert _known_illegal(database) == EXPECTED
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_the_review_migration_on_an_empty_database_at_0002(database: Database) -> None:
    _to(database, "0002")
    _to(database, "head")

    assert _known_illegal(database) == {}
    _to(database, "0002", down=True)
    _to(database, "head")
    assert _revision(database) == HEAD
