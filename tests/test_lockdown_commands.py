"""``vigil lockdown`` and ``vigil incident`` on a real data folder: setting, showing and clearing
a level by hand, strict durations, and incidents acknowledged and resolved from the terminal.

Most commands run in-process through Typer's runner; what the process prints on an error (one
line, no traceback) is checked by running ``python -m vigil.cli``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import Result

from tests.test_cli import _no_vigil_environment, run_process  # noqa: F401 - autouse fixture
from tests.test_cli import invoke as invoke_cli
from tests.test_cli import succeed as succeed_cli
from vigil.actions import incidents
from vigil.actions.incidents import IncidentKind
from vigil.commands.common import actor
from vigil.config import load_settings
from vigil.errors import Conflict, NotFound
from vigil.store.database import Database
from vigil.store.models import AuditEvent, Incident, LockdownState
from vigil.store.sites import get_site
from vigil.store.types import utcnow

# Wide enough that tables and error boxes keep each message on one line.
WIDE = {"COLUMNS": "200"}


def invoke(*args: str | Path) -> Result:
    return invoke_cli(*args, env=WIDE)


def succeed(*args: str | Path) -> Result:
    return succeed_cli(*args, env=WIDE)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def database(data_dir: Path) -> Iterator[Database]:
    """A data folder with its ``default`` site, opened as the server opens it."""
    succeed("init", "--data-dir", data_dir)
    opened = Database.from_settings(load_settings(data_dir=data_dir))
    yield opened
    opened.dispose()


def _state(database: Database) -> LockdownState | None:
    with database.session() as session:
        return session.get(LockdownState, get_site(session, "default").id)


def _actions(database: Database) -> list[AuditEvent]:
    with database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action.startswith("lockdown."))
                .order_by(AuditEvent.id)
            )
        )


def _open_incident(database: Database, data_dir: Path) -> int:
    settings = load_settings(data_dir=data_dir)
    with database.write_session() as session:
        incident, _ = incidents.raise_incident(
            session,
            settings.paging,
            get_site(session, "default"),
            IncidentKind.KNOWN_ILLEGAL,
            "default: an upload matched a block bank",
            {"bank": "known"},
            utcnow(),
        )
        return incident.id


def _incident(database: Database, incident_id: int) -> Incident:
    with database.session() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident


# --- lockdown ----------------------------------------------------------------------------------


def test_a_level_set_by_hand_is_shown_and_cleared(database: Database, data_dir: Path) -> None:
    output = succeed(
        "lockdown", "set", "2", "--for", "90m", "--reason", "spam wave", "--data-dir", data_dir
    ).output
    assert "default: level 2 (every image is held for review) until" in output
    state = _state(database)
    assert state is not None
    assert (state.manual_level, state.manual_by, state.manual_reason) == (2, actor(), "spam wave")
    assert state.manual_until is not None
    assert state.manual_until - state.updated_at == timedelta(minutes=90)

    status = succeed("lockdown", "status", "--data-dir", data_dir).output
    assert "default: level 2 - every image is held for review" in status
    assert f"set by hand by {actor()}" in status
    assert "spam wave" in status
    assert re.search(r"bank_match\s+.*30 min\s+.*0\s+.*2\s+.*1", status), status
    assert succeed("lockdown", "status", "--site", "default", "--data-dir", data_dir).output == (
        status
    )

    cleared = succeed("lockdown", "clear", "--reason", "over", "--data-dir", data_dir).output
    assert "default: lockdown cleared; level 0 (normal screening)" in cleared
    state = _state(database)
    assert state is not None
    assert state.manual_level is None
    assert (
        "level 0 - normal screening" in succeed("lockdown", "status", "--data-dir", data_dir).output
    )
    set_event, clear_event = _actions(database)
    assert (set_event.action, set_event.actor) == ("lockdown.set", actor())
    assert set_event.details["reason"] == "spam wave"
    assert (clear_event.action, clear_event.details["reason"]) == ("lockdown.cleared", "over")


@pytest.mark.parametrize(
    ("duration", "expected"),
    [("45m", timedelta(minutes=45)), ("2h", timedelta(hours=2)), ("1d", timedelta(days=1))],
)
def test_durations_are_minutes_hours_or_days(
    database: Database, data_dir: Path, duration: str, expected: timedelta
) -> None:
    succeed("lockdown", "set", "1", "--for", duration, "--reason", "r", "--data-dir", data_dir)
    state = _state(database)
    assert state is not None
    assert state.manual_until is not None
    assert state.manual_until - state.updated_at == expected


def test_without_a_duration_the_settings_default_applies(
    database: Database, data_dir: Path
) -> None:
    succeed("lockdown", "set", "3", "--reason", "r", "--data-dir", data_dir)
    state = _state(database)
    assert state is not None
    assert state.manual_until is not None
    hours = load_settings(data_dir=data_dir).lockdown.manual_default_hours
    assert state.manual_until - state.updated_at == timedelta(hours=hours)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["2", "--for", "2x", "--reason", "r"], "'2x' is not a duration"),
        (["2", "--for", "90", "--reason", "r"], "'90' is not a duration"),
        (["2", "--for", "1.5h", "--reason", "r"], "is not a duration"),
        (["2", "--for", "-1h", "--reason", "r"], "is not a duration"),
        (["2", "--for", "2 h", "--reason", "r"], "is not a duration"),
        (["2", "--for", "0m", "--reason", "r"], "at least a minute"),
        (["2", "--for", "31d", "--reason", "r"], "at most 30d"),
        (["4", "--reason", "r"], "Invalid value for 'level'"),
        (["two", "--reason", "r"], "Invalid value for 'level'"),
        (["2"], "Missing option '--reason'"),
        (["2", "--reason", "   "], "say why"),
        (["2", "--reason", "x" * 2001], "at most 2000 characters"),
    ],
    ids=[
        "unit",
        "no unit",
        "fraction",
        "negative",
        "space",
        "zero",
        "too long",
        "level 4",
        "level word",
        "no reason",
        "blank reason",
        "long reason",
    ],
)
def test_a_bad_setting_is_a_usage_error_and_changes_nothing(
    database: Database, data_dir: Path, arguments: list[str], message: str
) -> None:
    result = invoke("lockdown", "set", *arguments, "--data-dir", data_dir)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert _state(database) is None
    assert _actions(database) == []


def test_clearing_needs_a_reason(database: Database, data_dir: Path) -> None:
    assert invoke("lockdown", "clear", "--data-dir", data_dir).exit_code == 2
    assert invoke("lockdown", "clear", "--reason", " ", "--data-dir", data_dir).exit_code == 2
    assert _actions(database) == []


def test_an_unknown_site_is_one_line_without_a_traceback(data_dir: Path) -> None:
    assert run_process("init", "--data-dir", data_dir).returncode == 0
    for command in (
        ["lockdown", "set", "1", "--reason", "r", "--site", "nowhere"],
        ["lockdown", "status", "--site", "nowhere"],
        ["lockdown", "clear", "--reason", "r", "--site", "nowhere"],
    ):
        process = run_process(*command, "--data-dir", data_dir)
        assert process.returncode == 1
        assert process.stderr.strip() == "error: no site named 'nowhere'"
    bad = run_process(
        "lockdown", "set", "2", "--for", "soon", "--reason", "r", "--data-dir", data_dir
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert "'soon' is not a duration" in bad.stderr


# --- incidents ---------------------------------------------------------------------------------


def test_an_incident_is_listed_acknowledged_and_resolved(
    database: Database, data_dir: Path
) -> None:
    assert "no incidents" in succeed("incident", "list", "--data-dir", data_dir).output
    incident_id = _open_incident(database, data_dir)
    listed = succeed("incident", "list", "--data-dir", data_dir).output
    row = next(
        line for line in listed.splitlines() if re.search(rf"\b{incident_id}\b.*default", line)
    )
    assert "open" in row
    assert "matched a block bank" in listed

    acknowledged = succeed("incident", "ack", str(incident_id), "--data-dir", data_dir).output
    assert f"incident {incident_id} acknowledged" in acknowledged
    assert _incident(database, incident_id).acknowledged_by == actor()
    again = invoke("incident", "ack", str(incident_id), "--data-dir", data_dir)
    assert isinstance(again.exception, Conflict)
    assert "already acknowledged" in again.exception.message

    succeed("incident", "resolve", str(incident_id), "--reason", "handled", "--data-dir", data_dir)
    incident = _incident(database, incident_id)
    assert (incident.resolved_by, incident.open_key) == (actor(), None)
    listed = succeed("incident", "list", "--data-dir", data_dir).output
    assert "resolved" in listed
    with database.session() as session:
        why = session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "incident.resolved")
        ).one()
    assert why == {"why": "handled"}

    resolved_again = run_process("incident", "resolve", str(incident_id), "--data-dir", data_dir)
    assert resolved_again.returncode == 1
    assert resolved_again.stderr.strip() == (
        f"error: incident {incident_id} is already resolved (by {actor()})"
    )


def test_an_unknown_incident_is_an_error(database: Database, data_dir: Path) -> None:
    missing = invoke("incident", "ack", "4242", "--data-dir", data_dir)
    assert isinstance(missing.exception, NotFound)
    assert missing.exception.message == "no incident 4242"
    for bad in ("0", "-3", "x", str(2**40)):
        assert invoke("incident", "ack", bad, "--data-dir", data_dir).exit_code == 2
    process = run_process("incident", "resolve", "4242", "--data-dir", data_dir)
    assert process.returncode == 1
    assert process.stderr.strip() == "error: no incident 4242"
