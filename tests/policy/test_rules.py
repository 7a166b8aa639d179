"""The policy function, rule by rule: no database, no clock of its own."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from vigil.config import PolicySettings
from vigil.matching.banks import BankAction, Match
from vigil.matching.matcher import MatchReport
from vigil.policy import ScreeningFacts, TrustLevel, UploaderContext, Verdict, decide
from vigil.signals.base import HashType

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
HOLD_NEW = PolicySettings(hold_new_uploaders=True, new_account_age_hours=72)


def _match(bank: str, action: BankAction, distance: int = 0, frame: int | None = 0) -> Match:
    return Match(bank, action, HashType.PDQ, "a" * 64, "b" * 64, distance, frame)


def _facts(
    *matches: Match,
    suppressed: tuple[tuple[Match, Match], ...] = (),
    frames: int = 1,
    screened: int = 1,
) -> ScreeningFacts:
    return ScreeningFacts(MatchReport(tuple(matches), suppressed), frames, screened)


def test_no_signal_allows_with_no_reasons() -> None:
    decision = decide(_facts(), UploaderContext(), PolicySettings(), NOW)
    assert (decision.verdict, decision.reasons) == (Verdict.ALLOW, ())


def test_the_strictest_bank_wins_and_every_bank_is_cited_once() -> None:
    decision = decide(
        _facts(
            _match("watch", BankAction.HOLD, 3),
            _match("known", BankAction.BLOCK, 20, frame=2),
            _match("known", BankAction.BLOCK, 5, frame=4),
        ),
        UploaderContext(),
        PolicySettings(),
        NOW,
    )

    assert decision.verdict is Verdict.BLOCK
    assert [(reason.code, reason.details["bank"]) for reason in decision.reasons] == [
        ("bank_match", "known"),
        ("bank_match", "watch"),
    ]
    assert decision.reasons[0].details["distance"] == 5, "the closest match is cited"
    assert decision.reasons[0].details["frame"] == 4


def test_suppressed_matches_inform_without_changing_the_verdict() -> None:
    blocked, allowed_by = _match("known", BankAction.BLOCK), _match("fp", BankAction.IGNORE)
    decision = decide(
        _facts(suppressed=((blocked, allowed_by),)), UploaderContext(), PolicySettings(), NOW
    )

    assert decision.verdict is Verdict.ALLOW
    assert decision.reasons[0].code == "match_ignored"
    assert decision.reasons[0].details["ignored_by"] == "fp"


def test_frames_beyond_the_limits_hold_the_image() -> None:
    decision = decide(_facts(frames=500, screened=300), UploaderContext(), PolicySettings(), NOW)
    assert decision.verdict is Verdict.HOLD
    assert decision.reasons[0].code == "frames_not_screened"
    assert "200 of 500" in decision.reasons[0].message


def test_a_known_image_in_an_oversized_animation_is_still_blocked() -> None:
    decision = decide(
        _facts(_match("known", BankAction.BLOCK), frames=500, screened=300),
        UploaderContext(),
        PolicySettings(),
        NOW,
    )
    assert decision.verdict is Verdict.BLOCK
    assert {reason.code for reason in decision.reasons} == {"bank_match", "frames_not_screened"}


@pytest.mark.parametrize(
    ("uploader", "held"),
    [
        (UploaderContext(trust_level=TrustLevel.NEW), True),
        (UploaderContext(account_created_at=NOW - timedelta(hours=71)), True),
        (UploaderContext(account_created_at=NOW - timedelta(hours=73)), False),
        (
            UploaderContext(
                trust_level=TrustLevel.BASIC, account_created_at=NOW - timedelta(hours=1)
            ),
            True,
        ),
        (
            UploaderContext(
                trust_level=TrustLevel.TRUSTED, account_created_at=NOW - timedelta(hours=1)
            ),
            False,
        ),
        (UploaderContext(trust_level=TrustLevel.STAFF, account_created_at=NOW), False),
        (UploaderContext(trust_level=TrustLevel.BASIC), False),
        (UploaderContext(), False),
        # A clock skew on the site's side: an account "created" in the future is as new as can be.
        (UploaderContext(account_created_at=NOW + timedelta(hours=2)), True),
    ],
)
def test_who_counts_as_a_new_uploader(uploader: UploaderContext, held: bool) -> None:
    decision = decide(_facts(), uploader, HOLD_NEW, NOW)
    assert (decision.verdict is Verdict.HOLD) is held
    assert (decision.reasons[0].code == "new_uploader") if held else decision.reasons == ()


def test_new_uploaders_are_not_held_unless_configured() -> None:
    decision = decide(_facts(), UploaderContext(trust_level=TrustLevel.NEW), PolicySettings(), NOW)
    assert decision.verdict is Verdict.ALLOW


def test_reasons_serialise_with_their_details() -> None:
    decision = decide(
        _facts(_match("known", BankAction.BLOCK, 7)), UploaderContext(), PolicySettings(), NOW
    )
    record = decision.reasons[0].as_dict()
    assert record["code"] == "bank_match"
    assert record["verdict"] == "block"
    assert record["bank"] == "known"
    assert record["distance"] == 7
    assert "distance 7" in record["message"]


def test_a_suspended_uploader_is_blocked_without_review_even_when_trusted() -> None:
    facts = dataclasses.replace(_facts(), uploader_suspended=True)
    decision = decide(
        facts, UploaderContext(uploader_id="u7", trust_level=TrustLevel.TRUSTED), HOLD_NEW, NOW
    )

    assert decision.verdict is Verdict.BLOCK
    assert not decision.review
    assert [reason.code for reason in decision.reasons] == ["uploader_suspended"]
    assert decision.reasons[0].details["uploader_id"] == "u7"


def test_an_uploader_who_is_not_suspended_is_judged_on_the_image_alone() -> None:
    decision = decide(_facts(), UploaderContext(uploader_id="u7"), PolicySettings(), NOW)
    assert decision.verdict is Verdict.ALLOW
