"""The schema: migrations equal the models (SQLite and PostgreSQL); the audit log is append-only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, StatementError

from vigil.store import audit
from vigil.store.database import Database
from vigil.store.models import AuditEvent, Base


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'vigil.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Database(url)
    db.migrate()
    yield db
    db.dispose()


def test_the_migrations_build_exactly_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrating_twice_changes_nothing(database: Database) -> None:
    database.migrate()
    with database.session() as session:
        assert session.execute(text("SELECT generation FROM bank_generation")).scalar_one() == 0


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"]
)
def test_the_audit_log_refuses_edits(database: Database, statement: str) -> None:
    with database.session() as session:
        audit.append(session, "key:x", "submission.decided", "s1", {"decision": "allow"})

    with database.session() as session, pytest.raises(DBAPIError, match="append-only"):
        session.execute(text(statement))

    with database.session() as session:
        [event] = audit.events_for(session, "s1")
        assert event.actor == "key:x"


def test_times_come_back_in_utc(database: Database) -> None:
    with database.session() as session:
        audit.append(session, "a", "b", "times", {})
    with database.session() as session:
        [event] = session.query(AuditEvent).filter_by(subject="times").all()
    assert event.at.tzinfo is not None
    assert event.at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_naive_times_are_refused(database: Database) -> None:
    with database.session() as session:
        session.add(AuditEvent(at=datetime(2026, 1, 1), actor="a", action="b", details={}))
        with pytest.raises(StatementError, match="naive"):
            session.flush()
        session.rollback()


def test_a_failed_transaction_leaves_nothing_behind(database: Database) -> None:
    def write_then_fail() -> None:
        with database.write_session() as session:
            audit.append(session, "a", "b", "rolled-back", {})
            session.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_then_fail()
    with database.session() as session:
        assert audit.events_for(session, "rolled-back") == []
