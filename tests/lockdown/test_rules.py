"""Lockdown levels through real screening on a clock the test moves: each kind of signal raises
the level, levels expire step by step, levels set by hand win, and schedules apply.

Every test names its rules itself (the defaults are for production, not for reading a test).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.lockdown.conftest import (
    ADMIN,
    LABEL_POLICY,
    SITE_NAME,
    START,
    OpenSite,
    WatchedSite,
    copy_of,
    photo,
    rule,
    scoring_classifiers,
)
from tests.matching.conftest import bank_with
from tests.matching.support import signals_of
from vigil.actions.images import ImageStore
from vigil.actions.incidents import IncidentKind
from vigil.errors import InvalidRequest
from vigil.evidence.vault import find_item_for_submission
from vigil.lockdown import signals
from vigil.lockdown.kinds import LockdownLevel, SignalKind
from vigil.lockdown.levels import LevelSource, SiteConditions
from vigil.matching.banks import BankAction
from vigil.policy import TrustLevel
from vigil.screening import ScreeningOutcome
from vigil.signals import HashType
from vigil.store.models import SiteSignal

CHANGED = "lockdown.changed"
SUSPENDED = "uploader.suspended"
# A stand-in for a known illegal picture (a generated one: see tests/images.py).
KNOWN_SEED = 101


def _know(watched: WatchedSite, seed: int, action: BankAction = BankAction.BLOCK) -> None:
    """Put the PDQ hash of ``photo(seed)`` in a bank of ``action`` (named ``known-<action>``),
    so that its re-encoded copies match."""
    pdq = signals_of(photo(seed)).frame_hashes[0].value
    bank_with(watched.runtime, f"known-{action.value}", HashType.PDQ, action, [pdq])


def _codes(outcome: ScreeningOutcome) -> list[str]:
    return [reason["code"] for reason in outcome.submission.reasons]


def _automatic(level: int) -> SiteConditions:
    return SiteConditions(LockdownLevel(level), LevelSource.AUTOMATIC)


def _tick_for(watched: WatchedSite, minutes: int) -> list[tuple[int, int]]:
    """Tick once a minute for ``minutes`` minutes (the monitor ticks every few seconds; the
    rules count in minutes); returns (minutes since START, level) at every change."""
    changes = []
    level = watched.level()
    for _ in range(minutes):
        watched.clock.advance(minutes=1)
        watched.tick()
        if watched.level() != level:
            level = watched.level()
            changes.append(((watched.clock.now() - START) // timedelta(minutes=1), level))
    return changes


def _kept(watched: WatchedSite, outcome: ScreeningOutcome) -> bool:
    return watched.runtime.images.exists(ImageStore.relative_path(outcome.submission.id))


# Each kind of signal raises the level


def test_a_second_known_image_raises_level_1_within_one_tick(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.BANK_MATCH, 2, 30, 1), webhook=True)
    _know(watched, KNOWN_SEED)

    first = watched.upload(copy_of(KNOWN_SEED, 0), "wave-1")
    watched.tick()
    assert first.submission.decision == "block"
    assert watched.level() == 0, "one known image can be a lone repost"

    watched.clock.advance(minutes=3)
    watched.upload(copy_of(KNOWN_SEED, 1), "wave-2")
    watched.tick()

    assert watched.conditions() == _automatic(1)
    [raised] = watched.audit("lockdown.raised")
    assert (raised.actor, raised.subject, raised.at) == (
        "vigil",
        f"site/{SITE_NAME}",
        watched.clock.now(),
    )
    assert raised.details == {
        "from": 0,
        "to": 1,
        "level": 1,
        "rules": [
            {"signal": "bank_match", "measured": 2, "at_least": 2, "window_minutes": 30, "level": 1}
        ],
    }
    [changed] = watched.webhooks(CHANGED)
    assert changed == {
        "level": 1,
        "previous_level": 0,
        "source": "automatic",
        "description": LockdownLevel.NEW_ACCOUNTS_HELD.description,
        "uploads_paused": False,
        "cause": {"level": 1, "rules": raised.details["rules"]},
        "changed_at": watched.clock.now().isoformat(),
    }
    [incident] = watched.incidents(IncidentKind.LOCKDOWN)
    assert incident.resolved_at is None
    assert incident.details["level"] == 1
    assert "level 1" in incident.title


def test_matches_in_a_hold_bank_count_as_bank_matches(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.BANK_MATCH, 2, 30, 1))
    _know(watched, KNOWN_SEED, BankAction.HOLD)

    outcomes = [watched.upload(copy_of(KNOWN_SEED, number), f"u{number}") for number in (0, 1)]
    watched.tick()

    assert [outcome.submission.decision for outcome in outcomes] == ["hold", "hold"]
    assert not any(outcome.uploader_suspended for outcome in outcomes)
    assert watched.level() == 1
    assert watched.incidents(IncidentKind.KNOWN_ILLEGAL) == []


def test_images_a_model_holds_raise_the_level(open_site: OpenSite, tmp_path: Path) -> None:
    watched = open_site(
        rule(SignalKind.CLASSIFIER_HOLD, 3, 10, 1),
        # A model's holds are not its blocks: this rule must stay silent.
        rule(SignalKind.CLASSIFIER_BLOCK, 1, 10, 3),
        classifiers=scoring_classifiers(tmp_path, 0.6),
        policy=LABEL_POLICY,
    )

    held = [watched.upload(photo(seed), f"u{seed}") for seed in (1, 2)]
    watched.tick()
    assert [outcome.submission.decision for outcome in held] == ["hold", "hold"]
    assert _codes(held[0]) == ["classifier_label"]
    assert watched.level() == 0

    watched.upload(photo(3), "u3")
    watched.tick()

    assert watched.conditions() == _automatic(1)
    assert watched.measured(SignalKind.CLASSIFIER_BLOCK) == 0
    [raised] = watched.audit("lockdown.raised")
    assert [(cause["signal"], cause["measured"]) for cause in raised.details["rules"]] == [
        ("classifier_hold", 3)
    ]


def test_images_a_model_blocks_raise_the_level(open_site: OpenSite, tmp_path: Path) -> None:
    watched = open_site(
        rule(SignalKind.CLASSIFIER_BLOCK, 2, 10, 2),
        rule(SignalKind.CLASSIFIER_HOLD, 1, 10, 3),  # blocks are not holds
        classifiers=scoring_classifiers(tmp_path, 0.95),
        policy=LABEL_POLICY,
    )

    first = watched.upload(photo(1), "u1")
    watched.tick()
    assert (first.submission.decision, first.submission.review_state) == ("block", "pending")
    assert watched.level() == 0

    watched.upload(photo(2), "u2")
    watched.tick()

    assert watched.conditions() == _automatic(2)
    assert watched.measured(SignalKind.CLASSIFIER_HOLD) == 0
    [raised] = watched.audit("lockdown.raised")
    assert raised.details["rules"][0]["signal"] == "classifier_block"
    assert raised.details["to"] == 2


def test_reports_weighted_by_trust_raise_the_level(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.REPORT, 3, 10, 1))
    reported = watched.upload(photo(1), "poster").submission

    def report(weight: float) -> None:
        with watched.runtime.database.session() as session:
            signals.record_report(
                session,
                site_id=watched.site.id,
                submission_id=reported.id,
                uploader_id=reported.uploader_id,
                weight=weight,
                now=watched.clock.now(),
            )
        watched.tick()

    report(2.0)  # a trusted reporter
    report(0.5)  # a new one
    assert watched.level() == 0
    assert watched.measured(SignalKind.REPORT) == 2.5

    report(0.5)

    assert watched.conditions() == _automatic(1)
    [raised] = watched.audit("lockdown.raised")
    assert raised.details["rules"][0]["signal"] == "report"
    assert raised.details["rules"][0]["measured"] == 3


def test_uploads_from_new_and_low_trust_accounts_raise_the_level(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 3, 5, 1))
    for seed in range(3):
        watched.upload(photo(seed), f"regular-{seed}", trust=TrustLevel.BASIC, account_days=400)
        watched.upload(
            photo(10 + seed), f"trusted-{seed}", trust=TrustLevel.TRUSTED, account_days=1
        )
    watched.tick()
    assert watched.measured(SignalKind.NEW_ACCOUNT_UPLOAD) == 0
    assert watched.level() == 0

    watched.upload(photo(20), "said-new", trust=TrustLevel.NEW, account_days=30)
    watched.upload(photo(21), "three-days", trust=TrustLevel.BASIC, account_days=3)
    watched.tick()
    assert watched.level() == 0
    watched.upload(photo(22), "age-unknown", trust=TrustLevel.BASIC, account_days=None)
    watched.tick()

    assert watched.conditions() == _automatic(1)
    [raised] = watched.audit("lockdown.raised")
    assert raised.details["rules"][0]["signal"] == "new_account_upload"
    assert raised.details["rules"][0]["measured"] == 3


def test_one_uploader_posting_fast_raises_the_level(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.UPLOADER_RATE, 4, 5, 1))
    for seed in range(4):
        watched.upload(photo(seed), f"neighbour-{seed}")
    for seed in range(10, 15):
        watched.upload(photo(seed), None, account_days=None)  # uploads nobody is named for
    for seed in range(20, 23):
        watched.upload(photo(seed), "busy")
    watched.tick()
    assert watched.measured(SignalKind.UPLOADER_RATE) == 3
    assert watched.level() == 0

    watched.upload(photo(23), "busy")
    watched.tick()

    assert watched.conditions() == _automatic(1)
    [raised] = watched.audit("lockdown.raised")
    assert raised.details["rules"][0]["signal"] == "uploader_rate"
    assert raised.details["rules"][0]["measured"] == 4


def test_one_picture_from_three_accounts_is_a_burst(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEAR_DUPLICATES, 3, 10, 1))
    copies = [copy_of(7, number) for number in range(3)]
    assert len({hashlib.sha256(data).hexdigest() for data in copies}) == 3

    watched.upload(copies[0], "first")
    watched.upload(copies[1], "second")
    watched.tick()
    assert watched.measured(SignalKind.NEAR_DUPLICATES) == 2
    assert watched.level() == 0

    watched.upload(copies[2], "third")
    watched.tick()

    assert watched.measured(SignalKind.NEAR_DUPLICATES) == 3
    assert watched.conditions() == _automatic(1)
    [raised] = watched.audit("lockdown.raised")
    assert raised.details["rules"][0]["signal"] == "near_duplicates"


def test_one_account_reposting_a_picture_is_no_burst(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEAR_DUPLICATES, 2, 10, 1))

    for number in range(5):
        watched.upload(copy_of(7, number), "reposter")
    for seed in range(3):
        watched.upload(photo(seed), f"other-{seed}")  # different pictures
    watched.tick()

    assert watched.signal_rows(SignalKind.NEAR_DUPLICATES.value) == 0
    assert watched.measured(SignalKind.NEAR_DUPLICATES) == 0
    assert watched.level() == 0


def test_copies_posted_further_apart_than_the_near_duplicate_window_are_no_burst(
    open_site: OpenSite,
) -> None:
    watched = open_site(
        rule(SignalKind.NEAR_DUPLICATES, 2, 60, 1), near_duplicate_window_minutes=10
    )
    watched.upload(copy_of(7, 0), "first")
    watched.clock.advance(minutes=11)
    watched.upload(copy_of(7, 1), "second")
    watched.tick()

    assert watched.signal_rows(SignalKind.NEAR_DUPLICATES.value) == 0
    assert watched.level() == 0


def test_a_match_an_allow_list_suppresses_is_no_bank_match(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.BANK_MATCH, 1, 30, 1))
    harmless = photo(55)
    pdq = signals_of(harmless).frame_hashes[0].value
    bank_with(watched.runtime, "false-positives", HashType.PDQ, BankAction.IGNORE, [pdq])
    bank_with(watched.runtime, "known", HashType.PDQ, BankAction.BLOCK, [pdq])

    allowed = watched.upload(harmless, "member")
    watched.tick()

    assert allowed.submission.decision == "allow"
    assert _codes(allowed) == ["match_ignored"]
    assert not allowed.uploader_suspended
    assert watched.level() == 0


def test_signals_older_than_the_window_stop_counting(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 3, 5, 1))
    watched.upload_from_new_account(photo(1))
    watched.upload_from_new_account(photo(2))
    watched.tick()
    assert watched.measured(SignalKind.NEW_ACCOUNT_UPLOAD) == 2

    watched.clock.advance(minutes=6)
    watched.upload_from_new_account(photo(3))
    watched.tick()
    assert watched.measured(SignalKind.NEW_ACCOUNT_UPLOAD) == 1
    assert watched.level() == 0, "three uploads, but never three within five minutes"

    watched.clock.advance(minutes=2)
    watched.upload_from_new_account(photo(4))
    watched.upload_from_new_account(photo(5))
    watched.tick()

    assert watched.conditions() == _automatic(1)


def test_a_stronger_wave_raises_the_level_again_citing_the_rules_that_did(
    open_site: OpenSite,
) -> None:
    watched = open_site(
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 2, 10, 1),
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 4, 10, 2),
        webhook=True,
    )
    for seed in range(2):
        watched.upload_from_new_account(photo(seed))
    watched.tick()
    assert watched.level() == 1

    watched.clock.advance(minutes=1)
    for seed in range(2, 4):
        watched.upload_from_new_account(photo(seed))
    watched.tick()

    assert watched.conditions() == _automatic(2)
    first, second = watched.audit("lockdown.raised")
    assert (first.details["from"], first.details["to"]) == (0, 1)
    assert (second.details["from"], second.details["to"]) == (1, 2)
    assert [cause["at_least"] for cause in second.details["rules"]] == [4]
    assert [(row["previous_level"], row["level"]) for row in watched.webhooks(CHANGED)] == [
        (0, 1),
        (1, 2),
    ]
    # One incident per lockdown: the further raise joins it and names the new level.
    [incident] = watched.incidents(IncidentKind.LOCKDOWN)
    assert incident.trigger_count == 2
    assert "level 2" in incident.title
    assert incident.details["latest"]["level"] == 2


def test_rules_never_raise_past_the_automatic_maximum(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 2, 5, 3), max_automatic_level=1)
    for seed in range(5):
        watched.upload_from_new_account(photo(seed))
    watched.tick()

    assert watched.conditions() == _automatic(1)
    [raised] = watched.audit("lockdown.raised")
    assert (raised.details["to"], raised.details["level"]) == (1, 1)


def test_with_lockdown_disabled_the_rules_never_raise_the_level(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 2, 5, 3), enabled=False, webhook=True)
    for seed in range(5):
        watched.upload_from_new_account(photo(seed))
    watched.tick()

    assert watched.conditions() == SiteConditions()
    assert watched.describe().automatic_level == 0
    assert watched.measured(SignalKind.NEW_ACCOUNT_UPLOAD) == 5, "still measured, for the status"
    assert watched.audit("lockdown.raised") == []
    assert watched.webhooks(CHANGED) == []
    assert watched.incidents(IncidentKind.LOCKDOWN) == []


def test_a_site_without_a_webhook_url_is_not_sent_level_changes(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 1, 5, 2))
    watched.upload_from_new_account(photo(1))
    watched.tick()

    assert watched.level() == 2
    assert watched.webhooks(CHANGED) == []
    assert len(watched.incidents(IncidentKind.LOCKDOWN)) == 1


# Levels expire step by step


def _raise_to_3(watched: WatchedSite) -> None:
    for seed in range(3):
        watched.upload_from_new_account(photo(seed), f"newcomer-{seed}")
    watched.tick()
    assert watched.level() == 3


def test_a_level_steps_down_one_level_per_calm_period(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 3, 5, 3), calm_minutes=10, webhook=True)
    _raise_to_3(watched)

    # The signals count for five minutes more; ten calm minutes later the level steps down,
    # and again after each further ten.
    assert _tick_for(watched, 40) == [(15, 2), (25, 1), (35, 0)]

    lowered = watched.audit("lockdown.lowered")
    assert [(event.details["from"], event.details["to"]) for event in lowered] == [
        (3, 2),
        (2, 1),
        (1, 0),
    ]
    assert [event.at - START for event in lowered] == [
        timedelta(minutes=minutes) for minutes in (15, 25, 35)
    ]
    assert all(event.details["calm_minutes"] == 10 for event in lowered)
    assert [(row["previous_level"], row["level"]) for row in watched.webhooks(CHANGED)] == [
        (0, 3),
        (3, 2),
        (2, 1),
        (1, 0),
    ]
    assert [row["cause"] for row in watched.webhooks(CHANGED)[1:]] == [{"calm_minutes": 10}] * 3
    # The incident stays open until the site is back to normal.
    [incident] = watched.incidents(IncidentKind.LOCKDOWN)
    assert incident.resolved_at == START + timedelta(minutes=35)
    assert watched.conditions() == SiteConditions()


def test_renewed_signals_during_the_calm_period_restart_it(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 3, 5, 3), calm_minutes=10)
    _raise_to_3(watched)
    assert _tick_for(watched, 12) == []

    for seed in range(10, 13):
        watched.upload_from_new_account(photo(seed), f"returning-{seed}")
    # The new wave (minute 12) counts for five minutes; then ten calm minutes each step.
    assert _tick_for(watched, 40) == [(27, 2), (37, 1), (47, 0)]
    assert len(watched.audit("lockdown.raised")) == 1, "the level was never lowered to re-raise"


def test_a_level_steps_down_only_to_what_the_rules_still_ask_for(open_site: OpenSite) -> None:
    watched = open_site(
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 3, 5, 3),
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 1, 5, 1),
        calm_minutes=10,
    )
    _raise_to_3(watched)

    # A trickle of newcomers (one every four minutes) keeps asking for level 1.
    changes = []
    for minute in range(1, 61):
        watched.clock.advance(minutes=1)
        if minute % 4 == 0 and minute <= 40:
            watched.upload_from_new_account(photo(100 + minute), f"trickle-{minute}")
        watched.tick()
        changes.append(watched.level())

    assert [changes.index(level) + 1 for level in (2, 1, 0)] == [15, 25, 55]
    assert [event.details["to"] for event in watched.audit("lockdown.lowered")] == [2, 1, 0]


def test_a_polling_worker_evaluates_no_more_often_than_configured(open_site: OpenSite) -> None:
    watched = open_site(
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 1, 5, 1),
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 2, 5, 2),
        evaluate_seconds=5,
    )
    watched.upload_from_new_account(photo(1), "first")
    assert watched.monitor.tick_if_due() == 1
    assert watched.level() == 1

    watched.upload_from_new_account(photo(2), "second")
    watched.clock.advance(seconds=4)
    assert watched.monitor.tick_if_due() == 0
    assert watched.level() == 1

    watched.clock.advance(seconds=1)
    assert watched.monitor.tick_if_due() == 1
    assert watched.level() == 2


# Levels set by hand


def test_a_level_set_to_0_by_hand_holds_off_the_rules_until_it_expires(
    open_site: OpenSite,
) -> None:
    watched = open_site(
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 3, 5, 2), calm_minutes=180, webhook=True
    )
    assert watched.set_level(0, hours=2, reason="a promotion brings newcomers") is False
    [set_event] = watched.audit("lockdown.set")
    assert set_event.actor == ADMIN
    assert set_event.details == {
        "level": 0,
        "until": (START + timedelta(hours=2)).isoformat(),
        "reason": "a promotion brings newcomers",
    }

    for seed in range(3):
        watched.upload_from_new_account(photo(seed), f"newcomer-{seed}")
    watched.tick()

    assert watched.conditions() == SiteConditions(LockdownLevel.NORMAL, LevelSource.MANUAL)
    described = watched.describe()
    assert (described.automatic_level, described.manual_level) == (2, 0)
    assert described.manual_until == START + timedelta(hours=2)
    assert (described.manual_by, described.manual_reason) == (ADMIN, "a promotion brings newcomers")
    allowed = watched.upload_from_new_account(photo(5), "newcomer-5")
    assert allowed.submission.decision == "allow"
    assert watched.webhooks(CHANGED) == []
    assert watched.incidents(IncidentKind.LOCKDOWN) == []

    watched.clock.advance(hours=2)
    # Screening stops honouring the override the moment it ends, before any tick.
    assert watched.conditions() == _automatic(2)
    watched.tick()

    [expired] = watched.audit("lockdown.override_expired")
    assert expired.details == {"level": 0, "reason": "a promotion brings newcomers", "by": ADMIN}
    assert expired.at == START + timedelta(hours=2)
    assert watched.describe().manual_level is None
    [changed] = watched.webhooks(CHANGED)
    assert (changed["previous_level"], changed["level"], changed["source"]) == (0, 2, "automatic")
    assert len(watched.incidents(IncidentKind.LOCKDOWN)) == 1


def test_a_higher_level_set_by_hand_wins_over_the_rules(open_site: OpenSite) -> None:
    watched = open_site(
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 3, 5, 1), calm_minutes=180, webhook=True
    )
    for seed in range(3):
        watched.upload_from_new_account(photo(seed), f"newcomer-{seed}")
    watched.tick()
    assert watched.level() == 1

    assert watched.set_level(3, hours=1, reason="wave of abuse") is True
    watched.tick()

    assert watched.conditions() == SiteConditions(LockdownLevel.UPLOADS_PAUSED, LevelSource.MANUAL)
    assert watched.describe().automatic_level == 1
    refused = watched.upload(photo(10), "long-standing", trust=TrustLevel.TRUSTED)
    assert refused.uploads_paused
    assert _codes(refused) == ["uploads_paused"]

    watched.clock.advance(hours=1)
    watched.tick()

    assert watched.conditions() == _automatic(1)
    assert len(watched.audit("lockdown.override_expired")) == 1
    assert [
        (row["previous_level"], row["level"], row["source"], row["cause"].get("reason"))
        for row in watched.webhooks(CHANGED)
    ] == [
        (0, 1, "automatic", None),
        (1, 3, "manual", "wave of abuse"),
        (3, 1, "automatic", None),
    ]
    manual_cause = watched.webhooks(CHANGED)[1]["cause"]
    assert manual_cause == {
        "reason": "wave of abuse",
        "by": ADMIN,
        "until": (START + timedelta(hours=1)).isoformat(),
    }
    # Only the rules' raise paged; the admin who set level 3 knows already.
    [incident] = watched.incidents(IncidentKind.LOCKDOWN)
    assert (incident.details["level"], incident.trigger_count) == (1, 1)


def test_clearing_forgets_the_signals_seen_so_far_but_not_new_ones(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 3, 10, 2), webhook=True)
    for seed in range(3):
        watched.upload_from_new_account(photo(seed), f"newcomer-{seed}")
    watched.tick()
    watched.set_level(3, hours=None, reason="until someone looks")
    assert watched.level() == 3

    watched.clock.advance(minutes=1)
    assert watched.clear(reason="checked: a class project") is True

    assert watched.conditions() == SiteConditions()
    described = watched.describe()
    assert (described.automatic_level, described.manual_level) == (0, None)
    [cleared] = watched.audit("lockdown.cleared")
    assert cleared.actor == ADMIN
    assert cleared.details == {
        "reason": "checked: a class project",
        "automatic_level": 2,
        "manual_level": 3,
    }
    assert watched.webhooks(CHANGED)[-1]["level"] == 0

    watched.tick()
    assert watched.level() == 0, "the uploads before the clearing are still in the window"
    for seed in range(10, 12):
        watched.upload_from_new_account(photo(seed), f"another-{seed}")
    watched.tick()
    assert watched.measured(SignalKind.NEW_ACCOUNT_UPLOAD) == 2
    assert watched.level() == 0

    watched.upload_from_new_account(photo(12), "another-12")
    watched.tick()

    assert watched.conditions() == _automatic(2)
    assert len(watched.audit("lockdown.raised")) == 2


@pytest.mark.parametrize(
    ("level", "hours", "reason", "complaint"),
    [
        (4, 1.0, "drill", "0, 1, 2 or 3"),
        (-1, 1.0, "drill", "0, 1, 2 or 3"),
        (2, -1.0, "drill", "into the future"),
        (2, 1.0, "   ", "say why"),
    ],
)
def test_a_level_set_by_hand_must_make_sense(
    open_site: OpenSite, level: int, hours: float, reason: str, complaint: str
) -> None:
    watched = open_site()

    with pytest.raises(InvalidRequest, match=complaint):
        watched.set_level(level, hours=hours, reason=reason)

    assert watched.audit("lockdown.set") == []
    assert watched.conditions() == SiteConditions()


def test_an_expired_override_is_audited_once(open_site: OpenSite) -> None:
    watched = open_site()
    watched.set_level(2, hours=1)
    watched.clock.advance(hours=1, minutes=1)
    watched.tick()
    watched.tick()

    assert len(watched.audit("lockdown.override_expired")) == 1
    assert watched.conditions() == SiteConditions()


def test_the_site_is_told_who_cleared_the_lockdown_and_why(open_site: OpenSite) -> None:
    watched = open_site(webhook=True)
    watched.set_level(2, hours=None, reason="under attack")

    watched.clear(reason="attack over")

    cleared = watched.webhooks(CHANGED)[-1]
    assert (cleared["previous_level"], cleared["level"]) == (2, 0)
    assert "calm_minutes" not in cleared["cause"]
    assert (cleared["cause"].get("reason"), cleared["cause"].get("by")) == ("attack over", ADMIN)


def test_the_site_is_told_a_level_set_by_hand_ran_out(open_site: OpenSite) -> None:
    watched = open_site(webhook=True, calm_minutes=30)
    watched.set_level(3, hours=1, reason="wave of abuse")
    watched.clock.advance(hours=1)
    watched.tick()

    ended = watched.webhooks(CHANGED)[-1]
    assert (ended["previous_level"], ended["level"]) == (3, 0)
    assert "calm_minutes" not in ended["cause"]


# Schedules


_NIGHT = {"name": "night", "start": "22:00", "end": "07:00"}
# 23:30 in London on a summer night (BST, an hour ahead of UTC).
_SUMMER_NIGHT = datetime(2026, 7, 15, 22, 30, tzinfo=UTC)


def test_a_night_schedule_holds_young_accounts_only_at_night(open_site: OpenSite) -> None:
    watched = open_site(
        timezone="Europe/London",
        schedules=[{**_NIGHT, "hold_accounts_younger_than_days": 7}],
        start=_SUMMER_NIGHT,
    )

    held = watched.upload(photo(1), "three-days", account_days=3)
    established = watched.upload(photo(2), "established", account_days=400)

    assert (held.submission.decision, held.submission.review_state) == ("hold", "pending")
    assert _codes(held) == ["schedule"]
    assert held.submission.reasons[0]["schedule"] == "night"
    assert established.submission.decision == "allow"
    assert watched.conditions().level == LockdownLevel.NORMAL

    watched.clock.set(datetime(2026, 7, 16, 11, 0, tzinfo=UTC))  # noon in London
    allowed = watched.upload(photo(3), "three-days", account_days=3.5)

    assert (allowed.submission.decision, allowed.submission.reasons) == ("allow", [])


def test_a_schedules_minimum_level_applies_and_is_announced_without_paging(
    open_site: OpenSite,
) -> None:
    watched = open_site(
        timezone="Europe/London",
        schedules=[{**_NIGHT, "minimum_level": 1}],
        start=datetime(2026, 1, 14, 21, 50, tzinfo=UTC),  # GMT: London's clock is UTC's
        webhook=True,
    )
    watched.tick()
    assert watched.conditions() == SiteConditions()

    watched.clock.advance(minutes=15)
    conditions = watched.conditions()
    assert (conditions.level, conditions.source) == (1, LevelSource.SCHEDULE)
    assert [schedule.name for schedule in conditions.schedules] == ["night"]
    held = watched.upload(photo(1), "three-days", account_days=3)
    assert _codes(held) == ["lockdown"]
    assert held.submission.reasons[0]["source"] == "schedule"
    assert watched.webhooks(CHANGED) == [], "the site is told on the next tick"

    watched.tick()
    [started] = watched.webhooks(CHANGED)
    assert (started["previous_level"], started["level"], started["source"]) == (0, 1, "schedule")

    watched.clock.set(datetime(2026, 1, 15, 7, 5, tzinfo=UTC))
    watched.tick()

    assert watched.conditions() == SiteConditions()
    ended = watched.webhooks(CHANGED)[-1]
    assert (ended["previous_level"], ended["level"], ended["source"]) == (1, 0, "none")
    assert watched.incidents(IncidentKind.LOCKDOWN) == []
    assert watched.audit("lockdown.raised") == []


def test_a_schedule_makes_the_rules_more_sensitive_only_in_its_window(
    open_site: OpenSite,
) -> None:
    watched = open_site(
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 4, 5, 1),
        schedules=[{**_NIGHT, "rule_scale": 0.5}],
    )
    for seed in range(2):
        watched.upload_from_new_account(photo(seed), f"day-{seed}")
    watched.tick()
    [(_, measured, threshold)] = watched.describe().measures
    assert (measured, threshold) == (2, 4)
    assert watched.level() == 0

    watched.clock.set(datetime(2026, 1, 14, 22, 30, tzinfo=UTC))
    for seed in range(10, 12):
        watched.upload_from_new_account(photo(seed), f"night-{seed}")
    watched.tick()

    assert watched.conditions().level == 1
    [raised] = watched.audit("lockdown.raised")
    assert raised.details["rules"][0]["at_least"] == 2
    assert raised.details["rules"][0]["measured"] == 2


def _night_after_an_attack(open_site: OpenSite) -> WatchedSite:
    """A site whose night schedule holds level 1, after an afternoon attack that is over."""
    watched = open_site(
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 1, 5, 1),
        schedules=[{**_NIGHT, "minimum_level": 1}],
        calm_minutes=10,
        webhook=True,
    )
    watched.upload_from_new_account(photo(1), "afternoon")
    watched.tick()
    assert watched.level() == 1
    assert _tick_for(watched, 30) == [(15, 0)]
    return watched


def test_the_site_is_told_a_schedule_raised_the_level(open_site: OpenSite) -> None:
    watched = _night_after_an_attack(open_site)

    watched.clock.set(datetime(2026, 1, 14, 22, 5, tzinfo=UTC))
    watched.tick()

    started = watched.webhooks(CHANGED)[-1]
    assert (started["previous_level"], started["level"], started["source"]) == (0, 1, "schedule")
    assert "rules" not in started["cause"], "the afternoon's rules did not raise this level"
    assert "night" in json.dumps(started["cause"])


def test_the_site_is_told_a_schedule_ended(open_site: OpenSite) -> None:
    watched = _night_after_an_attack(open_site)
    watched.clock.set(datetime(2026, 1, 14, 22, 5, tzinfo=UTC))
    watched.tick()

    watched.clock.set(datetime(2026, 1, 15, 7, 5, tzinfo=UTC))
    watched.tick()

    ended = watched.webhooks(CHANGED)[-1]
    assert (ended["previous_level"], ended["level"], ended["source"]) == (1, 0, "none")
    assert "calm_minutes" not in ended["cause"]
    assert "night" in json.dumps(ended["cause"])


def test_an_attack_at_night_pages_even_when_a_schedule_holds_the_level_already(
    open_site: OpenSite,
) -> None:
    watched = open_site(
        rule(SignalKind.BANK_MATCH, 2, 30, 1),
        schedules=[{**_NIGHT, "minimum_level": 1}],
        start=datetime(2026, 1, 14, 23, 0, tzinfo=UTC),
    )
    _know(watched, KNOWN_SEED)
    watched.tick()
    assert watched.conditions().source is LevelSource.SCHEDULE

    for number in range(2):
        watched.upload(copy_of(KNOWN_SEED, number), f"wave-{number}")
    watched.tick()

    assert watched.conditions() == SiteConditions(
        LockdownLevel.NEW_ACCOUNTS_HELD, LevelSource.AUTOMATIC, watched.conditions().schedules
    )
    assert len(watched.audit("lockdown.raised")) == 1
    assert len(watched.incidents(IncidentKind.LOCKDOWN)) == 1


# What each level does to screening


def test_at_level_1_new_accounts_wait_and_established_ones_post(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 2, 5, 1))
    for seed in range(2):
        watched.upload_from_new_account(photo(seed), f"newcomer-{seed}")
    watched.tick()

    held = watched.upload_from_new_account(photo(5), "newcomer-5")
    allowed = watched.upload(photo(6), "established", account_days=400)

    assert (held.submission.decision, _codes(held)) == ("hold", ["lockdown"])
    assert held.conditions == _automatic(1)
    assert _kept(watched, held)
    assert allowed.submission.decision == "allow"


def test_at_level_2_even_a_trusted_uploaders_image_is_held(open_site: OpenSite) -> None:
    watched = open_site(rule(SignalKind.NEW_ACCOUNT_UPLOAD, 2, 5, 2))
    for seed in range(2):
        watched.upload_from_new_account(photo(seed), f"newcomer-{seed}")
    watched.tick()

    held = watched.upload(photo(5), "moderator", trust=TrustLevel.STAFF, account_days=900)

    assert (held.submission.decision, held.submission.review_state) == ("hold", "pending")
    assert _codes(held) == ["lockdown"]
    assert _kept(watched, held)


def test_at_level_3_uploads_are_refused_and_no_image_is_kept(open_site: OpenSite) -> None:
    watched = open_site()
    watched.set_level(3, hours=1)

    refused = watched.upload(photo(1), "moderator", trust=TrustLevel.STAFF)

    assert refused.uploads_paused
    assert refused.conditions.level == LockdownLevel.UPLOADS_PAUSED
    submission = refused.submission
    assert (submission.decision, submission.review_state) == ("block", "none")
    assert _codes(refused) == ["uploads_paused"]
    assert submission.image_path is None
    assert not _kept(watched, refused)
    images = watched.runtime.images.root
    assert not images.exists() or not [path for path in images.rglob("*") if path.is_file()]


def test_at_level_3_a_known_image_is_still_kept_as_evidence(open_site: OpenSite) -> None:
    watched = open_site()
    _know(watched, KNOWN_SEED)
    watched.set_level(3, hours=1)

    refused = watched.upload(copy_of(KNOWN_SEED, 0), "attacker")

    assert refused.uploads_paused
    assert sorted(_codes(refused)) == ["bank_match", "uploads_paused"]
    assert refused.submission.known_illegal
    # Sealed in the evidence vault (never a plain copy).
    assert refused.submission.image_path is None
    with watched.runtime.database.session() as session:
        item = find_item_for_submission(session, refused.submission.id)
        assert item is not None
    assert watched.runtime.vault.open_image(item) == copy_of(KNOWN_SEED, 0)
    assert refused.uploader_suspended


# An uploader whose image a block bank knows


def test_a_known_image_suspends_its_uploader_and_opens_one_incident(open_site: OpenSite) -> None:
    watched = open_site(webhook=True)
    _know(watched, KNOWN_SEED)

    caught = watched.upload(copy_of(KNOWN_SEED, 0), "attacker")

    assert caught.uploader_suspended
    assert caught.submission.decision == "block"
    assert caught.submission.known_illegal
    [incident] = watched.incidents(IncidentKind.KNOWN_ILLEGAL)
    assert (incident.trigger_count, incident.resolved_at) == (1, None)
    assert incident.details["submission_id"] == caught.submission.id
    assert incident.details["uploader_suspended"] is True

    innocent = watched.upload(photo(1), "attacker")
    assert innocent.uploader_suspended
    assert innocent.submission.decision == "block"
    assert _codes(innocent) == ["uploader_suspended"]

    accomplice = watched.upload(copy_of(KNOWN_SEED, 1), "accomplice")
    again = watched.upload(copy_of(KNOWN_SEED, 2), "attacker")

    assert accomplice.uploader_suspended
    assert again.uploader_suspended
    [incident] = watched.incidents(IncidentKind.KNOWN_ILLEGAL)
    assert incident.trigger_count == 3
    assert incident.details["latest"]["uploader_id"] == "attacker"
    suspensions = watched.webhooks(SUSPENDED)
    assert [row["uploader_id"] for row in suspensions] == ["attacker", "accomplice"]
    assert "known-block" in suspensions[0]["reason"]
    assert len(watched.audit(SUSPENDED)) == 2


def test_a_known_image_without_an_uploader_still_opens_an_incident(open_site: OpenSite) -> None:
    watched = open_site(webhook=True)
    _know(watched, KNOWN_SEED)

    caught = watched.upload(copy_of(KNOWN_SEED, 0), None, account_days=None)

    assert caught.submission.decision == "block"
    assert not caught.uploader_suspended
    assert watched.webhooks(SUSPENDED) == []
    [incident] = watched.incidents(IncidentKind.KNOWN_ILLEGAL)
    assert incident.details["uploader_suspended"] is False


# Old signals are forgotten


def test_a_tick_prunes_signals_no_window_reaches(open_site: OpenSite) -> None:
    # The longest window is the near-duplicate one (10 minutes); rows are kept 5 minutes more.
    watched = open_site(
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 100, 5, 1), near_duplicate_window_minutes=10
    )
    early = watched.upload_from_new_account(photo(1), "early")
    watched.clock.advance(minutes=14)
    late = watched.upload_from_new_account(photo(2), "late")
    watched.tick()
    assert _signal_submissions(watched) == {early.submission.id, late.submission.id}

    watched.clock.advance(minutes=2)
    watched.tick()

    assert _signal_submissions(watched) == {late.submission.id}
    assert watched.signal_rows() == 2  # the late upload, and that it came from a new account


def _signal_submissions(watched: WatchedSite) -> set[str | None]:
    with watched.runtime.database.session() as session:
        return set(session.scalars(select(SiteSignal.submission_id)).all())
