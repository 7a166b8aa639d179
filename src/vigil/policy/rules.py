"""The policy: signals, the uploader's context and the site's settings -> allow, hold or block.

A pure function: no database, no clock of its own, so every rule is tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vigil.config import PolicySettings
from vigil.matching.banks import BankAction, Match
from vigil.matching.matcher import MatchReport
from vigil.policy.decision import Decision, Reason, Verdict
from vigil.policy.uploader import TrustLevel, UploaderContext

_ACTION_VERDICTS = {BankAction.BLOCK: Verdict.BLOCK, BankAction.HOLD: Verdict.HOLD}
# Trust the site has given explicitly outweighs the age of the account.
_VOUCHED_FOR = frozenset({TrustLevel.TRUSTED, TrustLevel.STAFF})


@dataclass(frozen=True)
class ScreeningFacts:
    """What screening established about one image."""

    matches: MatchReport
    frame_count: int
    frames_screened: int


def decide(
    facts: ScreeningFacts, uploader: UploaderContext, settings: PolicySettings, now: datetime
) -> Decision:
    reasons = [*_bank_reasons(facts.matches), *_coverage_reasons(facts)]
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
            _match_details(match),
        )
        for match in closest.values()
    ]
    for match, allowed_by in report.suppressed:
        reasons.append(
            Reason(
                "match_ignored",
                Verdict.ALLOW,
                f"a match in bank {match.bank!r} was suppressed by allow-list {allowed_by.bank!r}",
                {**_match_details(match), "ignored_by": allowed_by.bank},
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
    return f"{match.hash_type} distance {match.distance}, frame {match.frame}"


def _match_details(match: Match) -> dict[str, object]:
    return {
        "bank": match.bank,
        "action": match.action.value,
        "hash_type": match.hash_type.value,
        "hash": match.query,
        "entry": match.entry,
        "distance": match.distance,
        "frame": match.frame,
    }
