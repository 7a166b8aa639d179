"""Imports while something else writes to the same database.

The other writer is let in at the worst moment, deterministically: just before the import's
batch inserts its hashes, after it has read the bank (an engine event, not a mock).
"""

from __future__ import annotations

import io
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text

from tests.matching.conftest import ACTOR, bank_with
from tests.matching.support import random_hash
from vigil.config import Settings, load_settings
from vigil.matching import importer
from vigil.runtime import Runtime
from vigil.signals import HashType
from vigil.store import banks as bank_store
from vigil.store.database import Database
from vigil.store.models import BankHash


@contextmanager
def before_first_hash_insert(database: Database, intrude: Callable[[], None]) -> Iterator[None]:
    """Run ``intrude`` once, as ``database`` is about to insert into bank_hashes."""
    fired = False

    def listener(*args: Any) -> None:
        nonlocal fired
        statement: str = args[2]
        if not fired and statement.lstrip().upper().startswith("INSERT INTO BANK_HASHES"):
            fired = True
            intrude()

    event.listen(database.engine, "before_cursor_execute", listener)
    try:
        yield
    finally:
        event.remove(database.engine, "before_cursor_execute", listener)
    assert fired, "the other writer never got its turn"


def count_check(runtime: Runtime, bank: str) -> tuple[int, int]:
    """(the bank's hash_count, the rows it really holds)."""
    with runtime.database.session() as session:
        stored = bank_store.get_bank(session, bank)
        rows = session.scalar(
            select(func.count()).select_from(BankHash).where(BankHash.bank_id == stored.id)
        )
        return stored.hash_count, int(rows or 0)


def hash_file(values: list[str]) -> io.BytesIO:
    return io.BytesIO("".join(f"{value}\n" for value in values).encode())


def test_sqlite_import_survives_another_writer_between_reading_the_bank_and_inserting(
    runtime: Runtime, settings: Settings
) -> None:
    """Screenings write while an import runs; on SQLite a batch that read before taking the
    write lock used to fail at once with "database is locked"."""
    bank_with(runtime, "busy", HashType.PDQ)
    rng = random.Random(1)
    values = [random_hash(rng) for _ in range(5)]
    outcome: list[str] = []

    def another_writer() -> None:
        path = settings.resolved_database_url.removeprefix("sqlite:///")
        connection = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            connection.execute(
                "INSERT INTO audit_log (at, actor, action, subject, details) "
                "VALUES ('2026-01-01 00:00:00', 'screening', 'elsewhere', NULL, '{}')"
            )
            outcome.append("wrote")
        except sqlite3.OperationalError as error:  # the import holds the lock: it waits its turn
            outcome.append(str(error))
        finally:
            connection.close()

    with before_first_hash_insert(runtime.database, another_writer):
        report = importer.import_file(runtime.database, "busy", hash_file(values), actor=ACTOR)

    assert report.added == 5
    assert count_check(runtime, "busy") == (5, 5)
    assert len(outcome) == 1


def test_concurrent_imports_into_one_bank_keep_its_hash_count_on_postgresql(
    postgres_url: str, tmp_path: Path, make_runtime: Callable[[Settings], Runtime]
) -> None:
    """Two imports into the same bank at once: the count must add up both, not keep the last.

    The second import arrives while the first is inside its batch. It must wait for the first to
    commit (both move the bank generation first, which serialises bank changes in generation
    order, what indexes catch up by), then add its own hashes."""
    runtime = make_runtime(load_settings(data_dir=tmp_path / "data", database_url=postgres_url))
    bank_with(runtime, "shared", HashType.PDQ)
    rng = random.Random(2)
    ours, theirs = [random_hash(rng) for _ in range(5)], [random_hash(rng) for _ in range(3)]
    other = Database(postgres_url)
    errors: list[BaseException] = []

    def another_import() -> None:
        try:
            importer.import_values(other, "shared", theirs, actor="another worker")
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    worker = threading.Thread(target=another_import)

    def start_and_see_it_wait() -> None:
        worker.start()
        wait_until_a_session_waits_for_a_lock(runtime.database)
        assert worker.is_alive()

    try:
        with before_first_hash_insert(runtime.database, start_and_see_it_wait):
            report = importer.import_file(runtime.database, "shared", hash_file(ours), actor=ACTOR)
        worker.join(60)
    finally:
        other.dispose()

    assert not errors
    assert not worker.is_alive()
    assert report.added == 5
    assert count_check(runtime, "shared") == (8, 8)


def wait_until_a_session_waits_for_a_lock(database: Database, timeout: float = 30.0) -> None:
    """Poll PostgreSQL until some other session is blocked on a row lock."""
    deadline = time.monotonic() + timeout
    monitor = Database(database.engine.url.render_as_string(hide_password=False))
    try:
        while time.monotonic() < deadline:
            with monitor.session() as session:
                waiting = session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
            if waiting:
                return
            time.sleep(0.02)
    finally:
        monitor.dispose()
    raise AssertionError("the second import never waited for the first")
