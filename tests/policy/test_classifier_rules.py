"""The classifier rules of the policy: label thresholds, failing models, the minor-risk rule.

Reports are built directly, as the classifier suite would hand them to ``decide``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from vigil.config import LabelThresholds, MinorRiskSettings, PolicySettings
from vigil.matching.banks import BankAction, Match
from vigil.matching.matcher import MatchReport
from vigil.policy import (
    CHILD_SAFETY,
    Decision,
    Priority,
    Reason,
    ScreeningFacts,
    UploaderContext,
    Verdict,
    decide,
)
from vigil.signals.base import HashType
from vigil.signals.classifiers import (
    Classification,
    ClassifierFailure,
    ClassifierReport,
    FailureKind,
)

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
POLICY = PolicySettings(
    labels={"nsfw": LabelThresholds(hold=0.4, block=0.9)},
    minor_risk=MinorRiskSettings(sexual_labels=["nsfw"], suspect_at=0.2, apparent_minor_at=0.5),
)


def _sexual(score: float) -> Classification:
    return Classification("opennsfw", "1.0+abc", {"nsfw": score}, views=1)


def _face_age(apparent_minor: float) -> Classification:
    return Classification("face_age", "2.0+age-v1", {"apparent_minor": apparent_minor}, views=1)


def _decide(
    *results: Classification,
    failures: tuple[ClassifierFailure, ...] = (),
    matches: tuple[Match, ...] = (),
    policy: PolicySettings = POLICY,
) -> Decision:
    report = ClassifierReport(tuple(results), failures, second_pass=len(results) > 1)
    facts = ScreeningFacts(MatchReport(matches, ()), 1, 1, classification=report)
    return decide(facts, UploaderContext(), policy, NOW)


def _reasons(decision: Decision, code: str) -> list[Reason]:
    return [reason for reason in decision.reasons if reason.code == code]


def _bank_match(action: BankAction) -> Match:
    return Match("known", action, HashType.SHA256, "a" * 64, "a" * 64, 0, None)


def test_a_score_below_hold_gives_no_reason() -> None:
    decision = _decide(_sexual(0.39))
    assert (decision.verdict, decision.reasons, decision.review) == (Verdict.ALLOW, (), False)


@pytest.mark.parametrize("score", [0.4, 0.75, 0.8999])
def test_a_score_from_hold_holds_the_image_and_cites_the_model(score: float) -> None:
    decision = _decide(_sexual(score))

    assert decision.verdict is Verdict.HOLD
    assert decision.review is True
    assert decision.priority is Priority.NORMAL
    assert decision.flags == frozenset()
    (reason,) = decision.reasons
    assert reason.code == "classifier_label"
    assert reason.verdict is Verdict.HOLD
    assert dict(reason.details) == {
        "label": "nsfw",
        "score": score,
        "threshold": 0.4,
        "model": "opennsfw",
        "model_version": "1.0+abc",
    }


@pytest.mark.parametrize("score", [0.9, 0.99, 1.0])
def test_a_score_from_block_blocks_pending_review_ahead_of_holds(score: float) -> None:
    decision = _decide(_sexual(score))

    assert decision.verdict is Verdict.BLOCK
    assert decision.review is True, "a model's block waits for a moderator"
    assert decision.priority is Priority.HIGH
    (reason,) = decision.reasons
    assert (reason.code, reason.details["threshold"]) == ("classifier_label", 0.9)
    assert reason.as_dict()["priority"] == "high"


def test_the_highest_score_of_any_model_is_the_one_cited() -> None:
    decision = _decide(
        Classification("opennsfw", "1", {"nsfw": 0.5}, views=1),
        Classification("site_model", "7", {"nsfw": 0.95}, views=1),
    )
    assert decision.verdict is Verdict.BLOCK
    (reason,) = _reasons(decision, "classifier_label")
    assert (reason.details["model"], reason.details["model_version"]) == ("site_model", "7")


def test_a_label_without_thresholds_has_no_effect() -> None:
    gore = Classification("gore", "3", {"gore": 1.0, "violence": 0.99}, views=1)
    decision = _decide(gore)
    assert (decision.verdict, decision.reasons) == (Verdict.ALLOW, ())


def test_a_label_with_only_a_block_threshold_never_holds() -> None:
    policy = PolicySettings(labels={"gore": LabelThresholds(block=0.8)})
    below = _decide(Classification("gore", "3", {"gore": 0.79}, views=1), policy=policy)
    above = _decide(Classification("gore", "3", {"gore": 0.8}, views=1), policy=policy)
    assert (below.verdict, above.verdict) == (Verdict.ALLOW, Verdict.BLOCK)


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (FailureKind.UNAVAILABLE, "classifier_unavailable"),
        (FailureKind.ERROR, "classifier_error"),
        (FailureKind.TIMEOUT, "classifier_timeout"),
    ],
)
def test_a_model_that_could_not_say_holds_the_image(kind: FailureKind, code: str) -> None:
    failure = ClassifierFailure("nudenet", kind, "what went wrong")

    decision = _decide(_sexual(0.01), failures=(failure,))

    assert decision.verdict is Verdict.HOLD
    assert decision.review is True
    (reason,) = decision.reasons
    assert (reason.code, reason.verdict) == (code, Verdict.HOLD)
    assert dict(reason.details) == {"model": "nudenet", "error": "what went wrong"}
    assert "nudenet" in reason.message


def test_a_failure_does_not_hide_a_block_from_another_model() -> None:
    failure = ClassifierFailure("nudenet", FailureKind.TIMEOUT, "budget ran out")
    decision = _decide(_sexual(0.95), failures=(failure,))
    assert decision.verdict is Verdict.BLOCK
    assert {reason.code for reason in decision.reasons} == {
        "classifier_label",
        "classifier_timeout",
    }


def test_sexual_content_at_hold_with_a_possible_minor_is_blocked_urgently() -> None:
    decision = _decide(_sexual(0.5), _face_age(0.8))

    assert decision.verdict is Verdict.BLOCK
    assert decision.review is True
    assert decision.priority is Priority.URGENT
    assert decision.flags == frozenset({CHILD_SAFETY})
    (reason,) = _reasons(decision, "minor_risk")
    assert reason.verdict is Verdict.BLOCK
    assert dict(reason.details) == {
        "label": "nsfw",
        "score": 0.5,
        "model": "opennsfw",
        "apparent_minor": 0.8,
        "face_model": "face_age",
        "face_model_version": "2.0+age-v1",
    }
    assert reason.as_dict()["flags"] == [CHILD_SAFETY]


def test_possibly_sexual_content_with_a_possible_minor_is_held_urgently() -> None:
    decision = _decide(_sexual(0.3), _face_age(0.5))

    assert decision.verdict is Verdict.HOLD
    assert decision.review is True
    assert decision.priority is Priority.URGENT
    assert decision.flags == frozenset({CHILD_SAFETY})
    assert [reason.code for reason in decision.reasons] == ["minor_risk"]


def test_a_score_below_suspect_at_is_not_sexual_even_with_a_minor() -> None:
    decision = _decide(_sexual(0.19), _face_age(1.0))
    assert (decision.verdict, decision.reasons) == (Verdict.ALLOW, ())


def test_the_age_model_alone_never_acts() -> None:
    alone = _decide(_face_age(1.0))
    with_a_harmless_score = _decide(_sexual(0.0), _face_age(1.0))
    assert (alone.verdict, alone.reasons) == (Verdict.ALLOW, ())
    assert (with_a_harmless_score.verdict, with_a_harmless_score.reasons) == (Verdict.ALLOW, ())


def test_an_apparent_minor_score_below_the_threshold_is_no_minor_risk() -> None:
    decision = _decide(_sexual(0.5), _face_age(0.49))

    assert decision.verdict is Verdict.HOLD
    assert _reasons(decision, "minor_risk") == []
    assert decision.priority is Priority.NORMAL
    assert decision.flags == frozenset()


def test_the_age_signal_never_lowers_a_verdict() -> None:
    adult = _decide(_sexual(0.95), _face_age(0.0))
    minor = _decide(_sexual(0.95), _face_age(1.0))

    assert (adult.verdict, adult.review, adult.priority) == (Verdict.BLOCK, True, Priority.HIGH)
    assert (minor.verdict, minor.review, minor.priority) == (Verdict.BLOCK, True, Priority.URGENT)
    assert minor.flags == frozenset({CHILD_SAFETY})


def test_a_known_image_blocked_by_a_bank_is_never_queued_even_if_a_model_would_be() -> None:
    decision = _decide(_sexual(0.95), matches=(_bank_match(BankAction.BLOCK),))

    assert decision.verdict is Verdict.BLOCK
    assert decision.review is False
    assert {reason.code for reason in decision.reasons} == {"bank_match", "classifier_label"}


def test_a_hold_bank_match_and_a_model_block_block_pending_review() -> None:
    decision = _decide(_sexual(0.95), matches=(_bank_match(BankAction.HOLD),))

    assert decision.verdict is Verdict.BLOCK
    assert decision.review is True
    assert decision.priority is Priority.HIGH


def test_child_safety_flags_survive_a_stricter_bank_block() -> None:
    """The flag comes from every reason that acts, so a known image is still marked."""
    decision = _decide(_sexual(0.5), _face_age(0.9), matches=(_bank_match(BankAction.BLOCK),))
    assert (decision.verdict, decision.review) == (Verdict.BLOCK, False)
    assert decision.flags == frozenset({CHILD_SAFETY})


def test_no_classification_means_no_classifier_reasons() -> None:
    facts = ScreeningFacts(MatchReport((), ()), 1, 1, classification=None)
    decision = decide(facts, UploaderContext(), POLICY, NOW)
    assert (decision.verdict, decision.reasons) == (Verdict.ALLOW, ())


@pytest.mark.parametrize(
    "thresholds",
    [{"hold": 0.5, "block": 0.4}, {"hold": 1.0, "block": 0.0}],
)
def test_a_block_threshold_below_hold_is_rejected(thresholds: Mapping[str, float]) -> None:
    with pytest.raises(ValidationError, match="must not be below hold"):
        LabelThresholds(**thresholds)


@pytest.mark.parametrize(
    "thresholds",
    [{"hold": 0.5, "block": 0.5}, {"hold": 0.5}, {"block": 0.5}, {}],
)
def test_ordered_or_partial_thresholds_are_accepted(thresholds: Mapping[str, float]) -> None:
    assert LabelThresholds(**thresholds).model_dump() == {"hold": None, "block": None, **thresholds}


@pytest.mark.parametrize("score", [-0.1, 1.5])
def test_a_threshold_outside_zero_to_one_is_rejected(score: float) -> None:
    with pytest.raises(ValidationError):
        LabelThresholds(hold=score)


def test_thresholds_in_the_policy_settings_are_validated_too() -> None:
    with pytest.raises(ValidationError, match="must not be below hold"):
        PolicySettings.model_validate({"labels": {"nsfw": {"hold": 0.9, "block": 0.4}}})


def test_a_face_model_failure_on_a_possibly_sexual_image_is_urgent_for_child_safety() -> None:
    decision = _decide(
        _sexual(0.3),  # below hold, above suspect_at
        failures=(ClassifierFailure("face_age", FailureKind.TIMEOUT, "budget ran out"),),
    )

    assert decision.verdict is Verdict.HOLD
    assert decision.priority is Priority.URGENT
    assert CHILD_SAFETY in decision.flags


def test_a_face_model_failure_on_an_innocent_image_is_an_ordinary_hold() -> None:
    decision = _decide(
        _sexual(0.01),
        failures=(ClassifierFailure("face_age", FailureKind.ERROR, "dlib failed"),),
    )

    assert decision.verdict is Verdict.HOLD
    assert decision.priority is Priority.NORMAL
    assert not decision.flags
