"""Several processes watching one site at the same moment change its level exactly once: one
audit entry, one incident, one page, one webhook to the site.

Each worker has its own database connection pool, as a separate process would. On PostgreSQL
the tests also force the races they are about: a transaction of the test's own holds a lock
until every worker is waiting on it, then lets them all go at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import pytest
from sqlalchemy import Connection, create_engine, func, select, text

from tests.lockdown.conftest import OpenSite, WatchedSite, copy_of, photo, rule
from tests.matching.conftest import bank_with
from tests.matching.support import signals_of
from vigil.actions.incidents import IncidentKind
from vigil.errors import ScreeningUnavailable
from vigil.lockdown import control
from vigil.lockdown.kinds import SignalKind
from vigil.lockdown.monitor import LockdownMonitor
from vigil.matching.banks import BankAction
from vigil.policy import TrustLevel, UploaderContext
from vigil.signals import HashType
from vigil.store.database import Database
from vigil.store.models import Page, Site, Submission, UploaderSuspension

WORKERS = 8
# How long a worker may take to reach the lock the test holds (a generous bound, not a measure).
REACH_SECONDS = 60.0
PAGING = {
    "channels": [{"name": "oncall", "kind": "webhook", "url": "http://127.0.0.1:9/page"}],
    "tiers": [{"channels": ["oncall"]}],
}
T = TypeVar("T")


def _all_at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(0..count-1)`` in threads released together; returns results in order."""
    barrier = threading.Barrier(count)

    def run(number: int) -> T:
        barrier.wait()
        return work(number)

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(run, number) for number in range(count)]
        return [future.result(timeout=REACH_SECONDS * 2) for future in futures]


@dataclass
class Workers:
    """Connection pools on the site's database, one per would-be process, all named ``tag``
    (PostgreSQL's application_name) so the test can see which of them wait for a lock."""

    tag: str
    databases: list[Database]


@contextmanager
def _workers(watched: WatchedSite, count: int) -> Iterator[Workers]:
    url = watched.settings.resolved_database_url
    tag = f"vigil-race-{uuid.uuid4().hex[:12]}"
    if url.startswith("postgresql"):
        url = f"{url}{'&' if '?' in url else '?'}application_name={tag}"
    databases = [
        Database(url, lock_timeout_seconds=watched.settings.database_lock_timeout_seconds)
        for _ in range(count)
    ]
    try:
        yield Workers(tag, databases)
    finally:
        for database in databases:
            database.dispose()


def _tick_with(watched: WatchedSite, database: Database) -> int:
    return LockdownMonitor(database, watched.settings, watched.clock).tick()


def _evaluate_with(watched: WatchedSite, database: Database) -> int:
    with database.write_session() as session:
        site = session.get(Site, watched.site.id)
        assert site is not None
        return int(control.evaluate_site(session, watched.settings, site, watched.clock.now()))


EVALUATIONS: dict[str, Callable[[WatchedSite, Database], int]] = {
    "tick": _tick_with,
    "evaluate_site": _evaluate_with,
}


def _under_attack(open_site: OpenSite, *, evaluated_before: bool = False) -> WatchedSite:
    """A site where two uploads from new accounts have just asked for level 1
    (``evaluated_before``: after an evaluation that found the site calm, so its state row
    exists; a tick would not write one for a calm site)."""
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 2, 5, 1), webhook=True, paging=PAGING)
    if evaluated_before:
        with watched.runtime.database.write_session() as session:
            site = session.get(Site, watched.site.id)
            assert site is not None
            settings = watched.runtime.settings
            assert not control.evaluate_site(session, settings, site, watched.clock.now())
    for seed in range(2):
        watched.upload_from_new_account(photo(seed), f"newcomer-{seed}")
    return watched


def _page_rows(watched: WatchedSite) -> int:
    with watched.runtime.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(Page)) or 0)


def _raised_exactly_once(watched: WatchedSite) -> None:
    assert watched.level() == 1
    assert len(watched.audit("lockdown.raised")) == 1
    [incident] = watched.incidents(IncidentKind.LOCKDOWN)
    assert incident.trigger_count == 1
    assert len(watched.audit("incident.opened")) == 1
    assert _page_rows(watched) == 1, "tier 1 has one channel, paged once"
    [changed] = watched.webhooks("lockdown.changed")
    assert (changed["previous_level"], changed["level"]) == (0, 1)


@pytest.mark.parametrize("how", sorted(EVALUATIONS))
def test_workers_evaluating_at_once_raise_the_level_once(open_site: OpenSite, how: str) -> None:
    watched = _under_attack(open_site)
    evaluate = EVALUATIONS[how]

    with _workers(watched, WORKERS) as workers:
        changed = _all_at_once(WORKERS, lambda number: evaluate(watched, workers.databases[number]))

    assert sum(changed) == 1, "exactly one worker changed the level"
    _raised_exactly_once(watched)


# PostgreSQL: the races forced


def _waiting(lock_holder: Connection, tag: str) -> int:
    """How many of the workers named ``tag`` wait for a lock."""
    # pg_stat_activity is read once per transaction unless its snapshot is dropped.
    lock_holder.execute(text("SELECT pg_stat_clear_snapshot()"))
    return int(
        lock_holder.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = :tag AND wait_event_type = 'Lock'"
            ),
            {"tag": tag},
        ).scalar_one()
    )


def _waiting_on_table(lock_holder: Connection, table: str) -> int:
    """How many transactions wait for a lock on ``table`` (of this test's schema)."""
    return int(
        lock_holder.execute(
            text(
                "SELECT count(*) FROM pg_locks "
                "WHERE NOT granted AND relation = CAST(:table AS regclass)"
            ),
            {"table": table},
        ).scalar_one()
    )


def _release_when(lock_holder: Connection, waiting: Callable[[], int], count: int) -> None:
    """Once ``count`` workers wait behind the test's lock, release it (all go at once)."""
    deadline = time.monotonic() + REACH_SECONDS
    while waiting() < count:
        assert time.monotonic() < deadline, "the workers never all reached the test's lock"
        time.sleep(0.01)
    lock_holder.rollback()


@contextmanager
def _holding(database_url: str, statement: str) -> Iterator[Connection]:
    """A connection of the test's own that runs ``statement`` in an open transaction."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
            yield connection
            connection.rollback()
    finally:
        engine.dispose()


def _in_background(count: int, work: Callable[[int], T]) -> Callable[[], list[T]]:
    """Start ``work(0..count-1)`` in threads; returns a function that waits for the results."""
    pool = ThreadPoolExecutor(count)
    futures = [pool.submit(work, number) for number in range(count)]

    def results() -> list[T]:
        try:
            return [future.result(timeout=REACH_SECONDS * 2) for future in futures]
        finally:
            pool.shutdown()

    return results


# What the test's lock is, and whether the site's state row exists before the workers start.
RACES = {
    # Every worker finds no state row and creates one; the inserts queue behind a table lock.
    "creating_the_state": (False, "LOCK TABLE lockdown_states IN SHARE ROW EXCLUSIVE MODE"),
    # Every worker waits for the site's existing state row, which the test holds.
    "queued_on_the_state": (True, "SELECT * FROM lockdown_states FOR UPDATE"),
}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("how", sorted(EVALUATIONS))
@pytest.mark.parametrize("race", sorted(RACES))
def test_workers_released_together_raise_the_level_once(
    open_site: OpenSite, database_url: str, how: str, race: str
) -> None:
    state_exists, lock = RACES[race]
    watched = _under_attack(open_site, evaluated_before=state_exists)
    evaluate = EVALUATIONS[how]

    with _holding(database_url, lock) as held, _workers(watched, WORKERS) as workers:
        results = _in_background(
            WORKERS, lambda number: evaluate(watched, workers.databases[number])
        )
        _release_when(held, lambda: _waiting(held, workers.tag), WORKERS)
        changed = results()

    assert sum(changed) == 1
    _raised_exactly_once(watched)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_known_images_racing_from_one_uploader_are_all_recorded(
    open_site: OpenSite, database_url: str
) -> None:
    watched = open_site(webhook=True)
    known = photo(101)
    bank_with(
        watched.runtime,
        "known",
        HashType.PDQ,
        BankAction.BLOCK,
        [signals_of(known).frame_hashes[0].value],
    )
    uploads = [copy_of(101, number) for number in range(2)]
    attacker = UploaderContext("attacker", trust_level=TrustLevel.NEW)

    def screen(number: int) -> str:
        try:
            outcome = watched.runtime.screening.screen(
                watched.site, uploads[number], attacker, idempotency_key=None, actor="test"
            )
        except ScreeningUnavailable as error:
            return f"unavailable: {error} ({error.__cause__})"
        return outcome.submission.decision

    # Both screenings find the uploader not yet suspended; their suspensions queue behind the
    # test's lock and are then written at once.
    with _holding(
        database_url, "LOCK TABLE uploader_suspensions IN SHARE ROW EXCLUSIVE MODE"
    ) as held:
        results = _in_background(len(uploads), screen)
        _release_when(held, lambda: _waiting_on_table(held, "uploader_suspensions"), len(uploads))
        decisions = results()

    assert decisions == ["block", "block"]
    with watched.runtime.database.session() as session:
        recorded = session.scalars(select(Submission.known_illegal)).all()
        suspensions = session.scalars(select(UploaderSuspension.uploader_id)).all()
    assert list(recorded) == [True, True]
    assert list(suspensions) == ["attacker"]
    assert [row["uploader_id"] for row in watched.webhooks("uploader.suspended")] == ["attacker"]
    [incident] = watched.incidents(IncidentKind.KNOWN_ILLEGAL)
    assert incident.trigger_count == 2
