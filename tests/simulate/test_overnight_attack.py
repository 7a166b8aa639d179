"""The shipped scenario, replayed in full: the issue's promises about an overnight attack."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vigil.commands.simulate import scenario_path
from vigil.simulate.replay import Replay, ReplayResult
from vigil.simulate.report import summarise, to_markdown
from vigil.simulate.scenario import load_scenario


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> ReplayResult:
    scenario = load_scenario(scenario_path("overnight-attack"))
    return Replay(scenario, tmp_path_factory.mktemp("replay")).run()


def test_no_image_matching_a_bank_is_ever_visible(replay: ReplayResult) -> None:
    known = [image for image in replay.images if image.known]
    assert len(known) >= 20
    assert all(image.decision in ("block", "paused") for image in known)
    assert not [image for image in known if image.ever_visible]


def test_lockdown_reaches_level_one_within_a_minute_of_the_second_strike(
    replay: ReplayResult,
) -> None:
    strikes = [image.at for image in replay.images if "bank_match" in image.reasons]
    second = strikes[1]
    raised = next(change for change in replay.level_changes if change.level >= 1)
    assert raised.source == "automatic"
    assert timedelta(0) <= raised.at - second <= timedelta(seconds=60)


def test_on_call_is_paged_within_a_minute_of_the_first_known_illegal_match(
    replay: ReplayResult,
) -> None:
    first = next(image.at for image in replay.images if "bank_match" in image.reasons)
    page = next(
        page for page in replay.pages if page.event == "trigger" and page.kind == "known_illegal"
    )
    assert page.tier == 1
    assert timedelta(0) <= page.at - first <= timedelta(seconds=60)


def test_an_unacknowledged_page_escalates_to_the_next_tier_and_stops_when_acknowledged(
    replay: ReplayResult,
) -> None:
    first = min(replay.pages, key=lambda page: page.at)
    incident = [page for page in replay.pages if page.incident_id == first.incident_id]
    lead = [page for page in incident if page.channel == "lead-pagerduty"]
    assert [page.event for page in lead] == ["trigger", "acknowledge", "resolve"]
    # Tier 2 ten minutes after tier 1, nobody having answered; the lead answers four minutes on.
    assert lead[0].at - first.at == pytest.approx(timedelta(minutes=10), abs=timedelta(seconds=5))
    ack = next(ack for ack in replay.acknowledgements if ack.incident_id == first.incident_id)
    assert ack.by == "priya"
    assert all(page.at <= ack.at for page in incident if page.event == "trigger")


def test_levels_rise_through_every_step_and_relax_one_step_at_a_time(
    replay: ReplayResult,
) -> None:
    levels = [change.level for change in replay.level_changes]
    assert max(levels) == 3
    after_peak = levels[levels.index(3) :]
    assert after_peak == [3, 2, 1, 0]
    for change in replay.level_changes:
        assert abs(change.level - change.previous) == 1 or change.level > change.previous


def test_uploads_are_refused_while_paused_and_reported_images_are_hidden(
    replay: ReplayResult,
) -> None:
    assert any(image.decision == "paused" and not image.abusive for image in replay.images)
    reported = [image for image in replay.images if image.hidden_by == "reports"]
    assert reported
    assert all(image.visible_seconds <= 5 * 60 for image in reported)
    assert replay.prevented_posts > 0  # the site banned accounts Vigil suspended


def test_the_report_states_every_check_as_passed(replay: ReplayResult) -> None:
    summary = summarise(replay)
    assert summary.passed
    assert [check.passed for check in summary.checks] == [True, True, True]
    text = to_markdown(replay)
    assert text.count("| PASS |") == 3
    assert "### Lockdown levels" in text


def test_the_scenario_ships_inside_the_package() -> None:
    shipped = scenario_path("overnight-attack")
    assert shipped.is_file()
    assert shipped.parent.name == "scenarios"
