"""What a site's lockdown level and schedules do to one decision: the policy function alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.config import LabelThresholds, LockdownSettings, PolicySettings, ScheduleSettings
from vigil.lockdown.kinds import LockdownLevel
from vigil.lockdown.levels import LevelSource, SiteConditions
from vigil.matching.banks import BankAction, Match
from vigil.matching.matcher import MatchReport
from vigil.policy import (
    UPLOADS_PAUSED,
    Decision,
    ScreeningFacts,
    TrustLevel,
    UploaderContext,
    Verdict,
    decide,
    is_low_trust,
)
from vigil.signals.base import HashType
from vigil.signals.classifiers.base import Classification
from vigil.signals.classifiers.suite import ClassifierReport

NOW = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)
LOCKDOWN = LockdownSettings()  # accounts younger than 7 days are low-trust


def _account(uploader: str, trust: TrustLevel | None, days: float | None) -> UploaderContext:
    created = None if days is None else NOW - timedelta(days=days)
    return UploaderContext(uploader_id=uploader, account_created_at=created, trust_level=trust)


NEW = _account("new", TrustLevel.NEW, 30)  # the site says new, whatever the account's age
YOUNG = _account("young", TrustLevel.BASIC, 3)
AGE_UNKNOWN = _account("age-unknown", TrustLevel.BASIC, None)
ANONYMOUS = UploaderContext()
OLD = _account("old", TrustLevel.BASIC, 400)
OLD_TRUST_NOT_GIVEN = _account("old-no-trust", None, 400)
TRUSTED_YOUNG = _account("trusted", TrustLevel.TRUSTED, 1)
STAFF_YOUNG = _account("staff", TrustLevel.STAFF, 1)

LOW_TRUST = [NEW, YOUNG, AGE_UNKNOWN, ANONYMOUS]
NOT_LOW_TRUST = [OLD, OLD_TRUST_NOT_GIVEN, TRUSTED_YOUNG, STAFF_YOUNG]
EVERYONE = LOW_TRUST + NOT_LOW_TRUST


def _at(level: int, source: LevelSource = LevelSource.AUTOMATIC) -> SiteConditions:
    return SiteConditions(LockdownLevel(level), source)


def _facts(
    conditions: SiteConditions,
    *matches: Match,
    classification: ClassifierReport | None = None,
) -> ScreeningFacts:
    return ScreeningFacts(
        MatchReport(tuple(matches), ()), 1, 1, classification, conditions=conditions
    )


def _decide(
    facts: ScreeningFacts,
    uploader: UploaderContext,
    lockdown: LockdownSettings | None = LOCKDOWN,
    policy: PolicySettings | None = None,
) -> Decision:
    return decide(facts, uploader, policy or PolicySettings(), NOW, lockdown)


def _codes(decision: Decision) -> list[str]:
    return [reason.code for reason in decision.reasons]


def _bank_match(action: BankAction) -> Match:
    return Match("known", action, HashType.SHA256, "a" * 64, "a" * 64, 0)


def _night(days: float | None = 7, **extra: object) -> ScheduleSettings:
    return ScheduleSettings(
        name="night", start="22:00", end="07:00", hold_accounts_younger_than_days=days, **extra
    )


def _ids(uploaders: list[UploaderContext]) -> list[str]:
    return [uploader.uploader_id or "anonymous" for uploader in uploaders]


@pytest.mark.parametrize("uploader", EVERYONE, ids=_ids(EVERYONE))
def test_at_level_0_the_site_adds_nothing(uploader: UploaderContext) -> None:
    decision = _decide(_facts(_at(0, LevelSource.NONE)), uploader)
    assert (decision.verdict, decision.reasons) == (Verdict.ALLOW, ())


@pytest.mark.parametrize("uploader", LOW_TRUST, ids=_ids(LOW_TRUST))
def test_level_1_holds_new_low_trust_and_unknown_age_accounts(uploader: UploaderContext) -> None:
    decision = _decide(_facts(_at(1)), uploader)

    assert (decision.verdict, decision.review) == (Verdict.HOLD, True)
    assert _codes(decision) == ["lockdown"]
    assert dict(decision.reasons[0].details) == {
        "level": 1,
        "source": "automatic",
        "uploader_id": uploader.uploader_id,
    }


@pytest.mark.parametrize("uploader", NOT_LOW_TRUST, ids=_ids(NOT_LOW_TRUST))
def test_level_1_lets_trusted_and_established_accounts_post(uploader: UploaderContext) -> None:
    decision = _decide(_facts(_at(1)), uploader)
    assert (decision.verdict, decision.reasons) == (Verdict.ALLOW, ())


def test_level_1_measures_low_trust_by_the_configured_account_age() -> None:
    ten_days = _account("ten-days", TrustLevel.BASIC, 10)
    strict = LockdownSettings(low_trust_account_days=14)
    lenient = LockdownSettings(low_trust_account_days=2)

    assert _decide(_facts(_at(1)), ten_days, strict).verdict is Verdict.HOLD
    assert _decide(_facts(_at(1)), ten_days, lenient).verdict is Verdict.ALLOW
    assert _decide(_facts(_at(1)), YOUNG, lenient).verdict is Verdict.ALLOW
    # An account younger than the policy's "new" age is low-trust whatever the lockdown says.
    two_days = _account("two-days", TrustLevel.BASIC, 2)
    assert _decide(_facts(_at(1)), two_days, lenient).verdict is Verdict.HOLD


def test_without_lockdown_settings_the_defaults_apply() -> None:
    assert _decide(_facts(_at(1)), YOUNG, lockdown=None).verdict is Verdict.HOLD
    assert _decide(_facts(_at(1)), OLD, lockdown=None).verdict is Verdict.ALLOW


@pytest.mark.parametrize("uploader", EVERYONE, ids=_ids(EVERYONE))
def test_level_2_holds_everyone(uploader: UploaderContext) -> None:
    decision = _decide(_facts(_at(2, LevelSource.MANUAL)), uploader)

    assert (decision.verdict, decision.review) == (Verdict.HOLD, True)
    assert _codes(decision) == ["lockdown"]
    assert decision.reasons[0].details["level"] == 2
    assert decision.reasons[0].details["source"] == "manual"


@pytest.mark.parametrize("uploader", EVERYONE, ids=_ids(EVERYONE))
def test_level_3_refuses_every_upload_without_review(uploader: UploaderContext) -> None:
    decision = _decide(_facts(_at(3)), uploader)

    assert (decision.verdict, decision.review) == (Verdict.BLOCK, False)
    assert _codes(decision) == [UPLOADS_PAUSED]
    assert "paused" in decision.reasons[0].message
    assert decision.reasons[0].review is False


def test_at_level_3_a_known_image_is_still_blocked_as_known() -> None:
    decision = _decide(_facts(_at(3), _bank_match(BankAction.BLOCK)), NEW)

    assert (decision.verdict, decision.review) == (Verdict.BLOCK, False)
    assert sorted(_codes(decision)) == ["bank_match", UPLOADS_PAUSED]


def test_at_level_3_an_image_a_hold_bank_knows_is_refused_not_queued() -> None:
    decision = _decide(_facts(_at(3), _bank_match(BankAction.HOLD)), OLD)

    assert (decision.verdict, decision.review) == (Verdict.BLOCK, False)
    assert _codes(decision) == [UPLOADS_PAUSED, "bank_match"]


def test_a_lockdown_hold_never_softens_a_models_block() -> None:
    report = ClassifierReport((Classification("sexual", "test-1", {"nsfw": 0.95}, views=1),))
    policy = PolicySettings(labels={"nsfw": LabelThresholds(hold=0.4, block=0.9)})

    decision = _decide(_facts(_at(2), classification=report), OLD, policy=policy)

    assert (decision.verdict, decision.review) == (Verdict.BLOCK, True)
    assert _codes(decision) == ["classifier_label", "lockdown"]


def test_a_suspended_uploader_stays_blocked_under_a_lockdown_hold() -> None:
    facts = ScreeningFacts(MatchReport((), ()), 1, 1, uploader_suspended=True, conditions=_at(1))

    decision = _decide(facts, NEW)

    assert decision.verdict is Verdict.BLOCK
    assert set(_codes(decision)) == {"lockdown", "uploader_suspended"}


# Schedules


@pytest.mark.parametrize(
    ("uploader", "held"),
    [
        (YOUNG, True),  # 3 days old
        (_account("six-days", TrustLevel.BASIC, 6.9), True),
        (_account("eight-days", TrustLevel.BASIC, 8), False),
        (AGE_UNKNOWN, True),
        (NEW, True),
        (TRUSTED_YOUNG, False),
        (STAFF_YOUNG, False),
        (OLD, False),
    ],
    ids=lambda value: value.uploader_id if isinstance(value, UploaderContext) else str(value),
)
def test_a_schedule_holds_accounts_younger_than_its_age(
    uploader: UploaderContext, held: bool
) -> None:
    conditions = SiteConditions(schedules=(_night(7),))

    decision = _decide(_facts(conditions), uploader)

    if held:
        assert (decision.verdict, decision.review) == (Verdict.HOLD, True)
        assert _codes(decision) == ["schedule"]
        assert dict(decision.reasons[0].details) == {
            "schedule": "night",
            "days": 7,
            "uploader_id": uploader.uploader_id,
        }
        assert "younger than 7 days" in decision.reasons[0].message
    else:
        assert (decision.verdict, decision.reasons) == (Verdict.ALLOW, ())


def test_a_schedule_can_be_stricter_than_the_lockdown_about_account_age() -> None:
    ten_days = _account("ten-days", TrustLevel.BASIC, 10)
    conditions = SiteConditions(
        LockdownLevel.NEW_ACCOUNTS_HELD, LevelSource.AUTOMATIC, (_night(14),)
    )

    decision = _decide(_facts(conditions), ten_days)  # low-trust means under 7 days here

    assert decision.verdict is Verdict.HOLD
    assert _codes(decision) == ["schedule"]
    # A young account is held on both counts.
    assert sorted(_codes(_decide(_facts(conditions), YOUNG))) == ["lockdown", "schedule"]


def test_the_strictest_schedule_in_force_decides_the_age() -> None:
    conditions = SiteConditions(
        schedules=(
            ScheduleSettings(
                name="weeknights", start="22:00", end="07:00", hold_accounts_younger_than_days=3
            ),
            ScheduleSettings(
                name="holidays", start="20:00", end="08:00", hold_accounts_younger_than_days=30
            ),
        )
    )

    decision = _decide(_facts(conditions), _account("ten-days", TrustLevel.BASIC, 10))

    assert decision.verdict is Verdict.HOLD
    assert decision.reasons[0].details["schedule"] == "holidays"


def test_a_schedule_holding_no_accounts_holds_no_image() -> None:
    conditions = SiteConditions(schedules=(_night(None, rule_scale=0.5),))
    assert _decide(_facts(conditions), NEW).verdict is Verdict.ALLOW


def test_at_level_3_a_schedule_adds_nothing_to_the_refusal() -> None:
    conditions = SiteConditions(LockdownLevel.UPLOADS_PAUSED, LevelSource.MANUAL, (_night(7),))
    decision = _decide(_facts(conditions), YOUNG)
    assert _codes(decision) == [UPLOADS_PAUSED]


# Who is low-trust


@pytest.mark.parametrize(
    ("uploader", "low"),
    [(uploader, True) for uploader in LOW_TRUST]
    + [(uploader, False) for uploader in NOT_LOW_TRUST],
    ids=_ids(LOW_TRUST) + _ids(NOT_LOW_TRUST),
)
def test_who_is_low_trust(uploader: UploaderContext, low: bool) -> None:
    assert is_low_trust(uploader, PolicySettings(), LOCKDOWN, NOW) is low


def test_low_trust_can_be_asked_for_another_age() -> None:
    ten_days = _account("ten-days", TrustLevel.BASIC, 10)
    assert not is_low_trust(ten_days, PolicySettings(), LOCKDOWN, NOW)
    assert is_low_trust(ten_days, PolicySettings(), LOCKDOWN, NOW, younger_than_days=14)
    assert not is_low_trust(ten_days, PolicySettings(), LOCKDOWN, NOW, younger_than_days=10)
