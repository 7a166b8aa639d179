"""Scenario files: every mistake is one clear message, and the command line says it so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vigil.cli import app
from vigil.errors import InvalidConfiguration
from vigil.simulate.scenario import load_scenario

MINIMAL = """
name = "tiny"
timezone = "Europe/London"
start = 2026-03-13T23:50:00
end = 2026-03-14T00:20:00

[settings.classifiers]
opennsfw = false
face_age = false

[[image_sets]]
name = "known"
count = 2
seed = 7
abusive = true
in_bank = "stand-in"

[[image_sets]]
name = "ordinary"
count = 3
seed = 70

[[accounts]]
id = "attacker"
trust = "new"
age_days = 0.1

[[accounts]]
id = "second"
trust = "new"
age_days = 0.1

[[posts]]
at = "00:01"
account = "attacker"
set = "known"
images = [0]

[[posts]]
at = "00:02:30"
account = "second"
set = "known"
images = [1]

[[traffic]]
set = "ordinary"
every_seconds = 300

[settings.paging]
[[settings.paging.channels]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/never-called"
[[settings.paging.tiers]]
channels = ["hook"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def test_a_time_before_the_start_is_the_next_morning(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, MINIMAL))
    first = scenario.moment(scenario.posts[0].at)
    assert scenario.local(first).isoformat() == "2026-03-14T00:01:00+00:00"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('set = "known"\nimages = [0]', 'set = "nope"'), "unknown image set"),
        (lambda t: t.replace('account = "second"', 'account = "ghost"'), "unknown account"),
        (lambda t: t.replace("images = [1]", "images = [5]"), "has no image 5"),
        (lambda t: t.replace('at = "00:01"', 'at = "25:61"'), "not a time of day"),
        (lambda t: t.replace('"Europe/London"', '"Mars/Olympus"'), "unknown time zone"),
        (lambda t: t.replace("end = 2026-03-14T00:20:00", "end = 2026-03-13T20:00:00"), "end"),
        (lambda t: "surprise = 1\n" + t, "surprise"),
        (lambda t: t + "\nsurprise = 1\n", r"\[settings\] paging.tiers.0.surprise"),
        (lambda t: t.replace("every_seconds = 300", "every_seconds = -1"), "every_seconds"),
        (lambda t: t.replace("[[posts]]", "[[posts", 1), "not valid TOML"),
    ],
)
def test_a_broken_scenario_is_one_clear_error(tmp_path: Path, change: object, message: str) -> None:
    assert callable(change)
    with pytest.raises(InvalidConfiguration, match=message):
        load_scenario(write(tmp_path, change(MINIMAL)))


def test_a_scenario_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidConfiguration, match="UTF-8"):
        load_scenario(path)


def test_the_command_replays_a_scenario_and_writes_its_report(tmp_path: Path) -> None:
    output = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["simulate", str(write(tmp_path, MINIMAL)), "--json", "-o", str(output)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    assert [check["passed"] for check in document["checks"]] == [True, True, True]
    known = [image for image in document["images"] if image["known"]]
    assert [image["decision"] for image in known] == ["block", "block"]
    assert document["level_changes"][0]["level"] == 1
    assert document["pages"][0]["channel"] == "hook"


def test_the_command_fails_when_a_check_fails(tmp_path: Path) -> None:
    # With the bank rule switched off, the second strike raises no lockdown: the check fails.
    text = MINIMAL + "\n[settings.lockdown]\nenabled = false\n"
    result = CliRunner().invoke(app, ["simulate", str(write(tmp_path, text))])
    assert result.exit_code == 1
    assert "FAIL" in result.output


def test_the_command_names_the_shipped_scenarios_when_one_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "no-such-scenario"])
    assert isinstance(result.exception, InvalidConfiguration)
    assert "shipped scenarios: overnight-attack" in str(result.exception)
