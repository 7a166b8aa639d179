"""The policy: signals, the uploader's context and the site's settings -> allow, hold or block.

A pure function: no database, no clock of its own, so every rule is tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vigil.config import LockdownSettings, PolicySettings
from vigil.lockdown.kinds import LockdownLevel
from vigil.lockdown.levels import SiteConditions
from vigil.matching.banks import BankAction, Match
from vigil.matching.matcher import MatchReport
from vigil.policy.decision import CHILD_SAFETY, Decision, Priority, Reason, Verdict
from vigil.policy.uploader import TrustLevel, UploaderContext
from vigil.signals.classifiers import ClassifierReport, FailureKind
from vigil.signals.classifiers.face_age import LABEL as APPARENT_MINOR
from vigil.signals.classifiers.face_age import NAME as FACE_AGE
from vigil.signals.variants import describe_variant

_ACTION_VERDICTS = {BankAction.BLOCK: Verdict.BLOCK, BankAction.HOLD: Verdict.HOLD}
# Trust the site has given explicitly outweighs the age of the account.
_VOUCHED_FOR = frozenset({TrustLevel.TRUSTED, TrustLevel.STAFF})


@dataclass(frozen=True)
class ScreeningFacts:
    """What screening established about one image."""

    matches: MatchReport
    frame_count: int
    frames_screened: int
    # None: no classifier ran (none configured, or a known image was blocked without them).
    classification: ClassifierReport | None = None
    # A moderator suspended this uploader (for example after rejecting an image as illegal).
    uploader_suspended: bool = False
    # The site's lockdown level and the schedules in force.
    conditions: SiteConditions = field(default_factory=SiteConditions)


UPLOADS_PAUSED = "uploads_paused"


def decide(
    facts: ScreeningFacts,
    uploader: UploaderContext,
    settings: PolicySettings,
    now: datetime,
    lockdown: LockdownSettings | None = None,
) -> Decision:
    reasons = [*_bank_reasons(facts.matches), *_coverage_reasons(facts)]
    reasons.extend(_site_reasons(facts.conditions, uploader, settings, lockdown, now))
    if facts.classification is not None:
        reasons.extend(_classifier_reasons(facts.classification, settings))
    if facts.uploader_suspended:
        reasons.append(
            Reason(
                "uploader_suspended",
                Verdict.BLOCK,
                "a moderator suspended this uploader",
                {"uploader_id": uploader.uploader_id},
            )
        )
    if settings.hold_new_uploaders and is_new_uploader(uploader, settings, now):
        reasons.append(
            Reason(
                "new_uploader",
                Verdict.HOLD,
                "images from new accounts are held for review",
                {"trust_level": uploader.trust_level, "uploader_id": uploader.uploader_id},
            )
        )
    return Decision.from_reasons(reasons)


def is_new_uploader(uploader: UploaderContext, settings: PolicySettings, now: datetime) -> bool:
    if uploader.trust_level is TrustLevel.NEW:
        return True
    if uploader.trust_level in _VOUCHED_FOR or uploader.account_created_at is None:
        return False
    age = now - uploader.account_created_at
    return age < timedelta(hours=settings.new_account_age_hours)


def is_low_trust(
    uploader: UploaderContext,
    settings: PolicySettings,
    lockdown: LockdownSettings,
    now: datetime,
    *,
    younger_than_days: float | None = None,
) -> bool:
    """New, or younger than ``younger_than_days`` (default: the lockdown's low-trust age), or of
    unknown age; an account the site vouches for (trusted, staff) never is."""
    if is_new_uploader(uploader, settings, now):
        return True
    if uploader.trust_level in _VOUCHED_FOR:
        return False
    if uploader.account_created_at is None:
        return True  # nothing says otherwise: during an attack, unknown is not trusted
    days = lockdown.low_trust_account_days if younger_than_days is None else younger_than_days
    return now - uploader.account_created_at < timedelta(days=days)


def _site_reasons(
    conditions: SiteConditions,
    uploader: UploaderContext,
    settings: PolicySettings,
    lockdown: LockdownSettings | None,
    now: datetime,
) -> list[Reason]:
    """What the site's lockdown level and schedules add."""
    lockdown = lockdown or LockdownSettings()
    level = conditions.level
    details: dict[str, object] = {"level": int(level), "source": conditions.source.value}
    reasons: list[Reason] = []
    if level >= LockdownLevel.UPLOADS_PAUSED:
        # Refused, not queued: nobody reviews an image the site never accepted.
        return [
            Reason(
                UPLOADS_PAUSED,
                Verdict.BLOCK,
                "image uploads are paused while the site is under attack; try again later",
                details,
                review=False,
            )
        ]
    if level >= LockdownLevel.ALL_HELD:
        reasons.append(
            Reason("lockdown", Verdict.HOLD, "every image is held for review (lockdown)", details)
        )
    elif level >= LockdownLevel.NEW_ACCOUNTS_HELD and is_low_trust(
        uploader, settings, lockdown, now
    ):
        reasons.append(
            Reason(
                "lockdown",
                Verdict.HOLD,
                "images from new or low-trust accounts are held for review (lockdown)",
                {**details, "uploader_id": uploader.uploader_id},
            )
        )
    scheduled = conditions.schedule_account_days
    if scheduled is not None:
        days, name = scheduled
        if is_low_trust(uploader, settings, lockdown, now, younger_than_days=days):
            reasons.append(
                Reason(
                    "schedule",
                    Verdict.HOLD,
                    f"images from accounts younger than {days:g} days are held ({name})",
                    {"schedule": name, "days": days, "uploader_id": uploader.uploader_id},
                )
            )
    return reasons


def _bank_reasons(report: MatchReport) -> list[Reason]:
    """One reason per bank that matched, citing its closest match."""
    closest: dict[str, Match] = {}
    for match in report.matches:
        best = closest.get(match.bank)
        if best is None or match.distance < best.distance:
            closest[match.bank] = match
    reasons = [
        Reason(
            "bank_match",
            _ACTION_VERDICTS[match.action],
            f"matched bank {match.bank!r} ({_describe(match)})",
            match_details(match),
        )
        for match in closest.values()
    ]
    for match, allowed_by in report.suppressed:
        reasons.append(
            Reason(
                "match_ignored",
                Verdict.ALLOW,
                f"a match in bank {match.bank!r} was suppressed by allow-list {allowed_by.bank!r}",
                {**match_details(match), "ignored_by": allowed_by.bank},
            )
        )
    return reasons


def _coverage_reasons(facts: ScreeningFacts) -> list[Reason]:
    """An image is only allowed if every frame of it was screened."""
    unscreened = facts.frame_count - facts.frames_screened
    if unscreened <= 0:
        return []
    return [
        Reason(
            "frames_not_screened",
            Verdict.HOLD,
            f"{unscreened} of {facts.frame_count} frames exceed the screening limits",
            {"frame_count": facts.frame_count, "frames_screened": facts.frames_screened},
        )
    ]


def _describe(match: Match) -> str:
    if match.hash_type.is_exact:
        return f"exact {match.hash_type}"
    where = f"{match.hash_type} distance {match.distance}, frame {match.frame}"
    if match.variant is None:
        return where
    return f"{where}: the known image {describe_variant(match.variant)}"


# What a reason (and an evidence item) says about each bank match. ``variant`` names the edited
# copy of the upload that matched (``flip_h``, ``trimmed``, ``crop_90``...; None: the upload as
# displayed), see vigil.signals.variants.
MATCH_FIELDS = ("bank", "action", "hash_type", "hash", "entry", "distance", "frame", "variant")


def match_details(match: Match) -> dict[str, object]:
    return {
        "bank": match.bank,
        "action": match.action.value,
        "hash_type": match.hash_type.value,
        "hash": match.query,
        "entry": match.entry,
        "distance": match.distance,
        "frame": match.frame,
        "variant": match.variant,
    }


_FAILURE_MESSAGES = {
    FailureKind.UNAVAILABLE: "classifier {model} is not loaded",
    FailureKind.ERROR: "classifier {model} failed on this image",
    FailureKind.TIMEOUT: "classifier {model} did not finish within the time budget",
}


def _classifier_reasons(report: ClassifierReport, settings: PolicySettings) -> list[Reason]:
    """Models that could not say hold the image; scores past a label's thresholds hold or block
    it; and sexual content with a face that may be a minor's goes to the child-safety path."""
    rule = settings.minor_risk
    possibly_sexual = report.reaches(rule.sexual_labels, rule.suspect_at)
    reasons = []
    for failure in report.failures:
        message = _FAILURE_MESSAGES[failure.kind].format(model=failure.model)
        details: dict[str, object] = {"model": failure.model, "error": failure.message}
        if failure.model == FACE_AGE and possibly_sexual:
            # A possibly sexual image whose faces could not be aged may show a minor: it is
            # reviewed first, like one where a minor was seen.
            reasons.append(
                Reason(
                    f"classifier_{failure.kind.value}",
                    Verdict.HOLD,
                    f"{message}; the image may be sexual, so a minor cannot be ruled out",
                    details,
                    priority=Priority.URGENT,
                    flags=frozenset({CHILD_SAFETY}),
                )
            )
        else:
            reasons.append(
                Reason(f"classifier_{failure.kind.value}", Verdict.HOLD, message, details)
            )
    for label, thresholds in settings.labels.items():
        score, source = report.best(label)
        if source is None:
            continue
        details = {
            "label": label,
            "score": round(score, 4),
            "model": source.model,
            "model_version": source.version,
        }
        if thresholds.block is not None and score >= thresholds.block:
            reasons.append(
                Reason(
                    "classifier_label",
                    Verdict.BLOCK,
                    f"{source.model} scored {label} {score:.2f}, at or above {thresholds.block}",
                    {**details, "threshold": thresholds.block},
                    review=True,
                    priority=Priority.HIGH,
                )
            )
        elif thresholds.hold is not None and score >= thresholds.hold:
            reasons.append(
                Reason(
                    "classifier_label",
                    Verdict.HOLD,
                    f"{source.model} scored {label} {score:.2f}, at or above {thresholds.hold}",
                    {**details, "threshold": thresholds.hold},
                )
            )
    minor_risk = _minor_risk_reason(report, settings)
    if minor_risk is not None:
        reasons.append(minor_risk)
    return reasons


def _minor_risk_reason(report: ClassifierReport, settings: PolicySettings) -> Reason | None:
    rule = settings.minor_risk
    minor, face_model = report.best(APPARENT_MINOR)
    if face_model is None or minor < rule.apparent_minor_at:
        return None
    sexual = [(label, *report.best(label)) for label in rule.sexual_labels]
    flagged = [(label, score, model) for label, score, model in sexual if model is not None]
    if not flagged:
        return None

    def at_hold(label: str, score: float) -> bool:
        """The label alone would act on this score (a label with only a block threshold acts
        from there)."""
        thresholds = settings.labels.get(label)
        if thresholds is None:
            return False
        acts_from = thresholds.hold if thresholds.hold is not None else thresholds.block
        return acts_from is not None and score >= acts_from

    explicit = [entry for entry in flagged if at_hold(entry[0], entry[1])]
    suspect = [entry for entry in flagged if entry[1] >= rule.suspect_at]
    if not explicit and not suspect:
        return None
    label, score, model = max(explicit or suspect, key=lambda entry: entry[1])
    assert model is not None
    details = {
        "label": label,
        "score": round(score, 4),
        "model": model.model,
        "apparent_minor": round(minor, 4),
        "face_model": face_model.model,
        "face_model_version": face_model.version,
    }
    if explicit:
        return Reason(
            "minor_risk",
            Verdict.BLOCK,
            f"sexual content ({label} {score:.2f}) with a face that may be a minor's",
            details,
            review=True,
            priority=Priority.URGENT,
            flags=frozenset({CHILD_SAFETY}),
        )
    return Reason(
        "minor_risk",
        Verdict.HOLD,
        f"possibly sexual content ({label} {score:.2f}) with a face that may be a minor's",
        details,
        priority=Priority.URGENT,
        flags=frozenset({CHILD_SAFETY}),
    )
