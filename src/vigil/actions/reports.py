"""Community reports: members say a published image is harmful; enough of them hide it.

A report counts for its reporter's trust (``reports.weights``), and a reporter counts once per
submission. Only reports made since a moderator last decided count: the moderator has seen those.
When they reach ``reports.hide_at`` (or ``reports.child_safety_hide_at`` for reports of child
abuse) and the image is published, it goes back to the review queue and the site is asked by
webhook to hide it until a moderator decides; the moderator's ``submission.decided`` then says
whether to show it again.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.actions.submissions import REVIEW_PENDING
from vigil.actions.webhooks import enqueue_event
from vigil.config import ReportSettings
from vigil.errors import InvalidRequest, NotFound
from vigil.lockdown import signals as site_signals
from vigil.policy import CHILD_SAFETY, Priority, TrustLevel, UploaderContext, Verdict
from vigil.store import audit
from vigil.store.models import Report, Site, Submission
from vigil.store.sites import SiteRef
from vigil.store.submissions import get_submission, latest_with_sha256

if TYPE_CHECKING:
    from vigil.screening import ScreeningService

RECEIVED_EVENT = "report.received"
HIDE_REQUESTED_EVENT = "submission.hide_requested"
ESCALATED_EVENT = "submission.escalated"
COMMUNITY_REPORTS = "community_reports"  # the reason code a hidden submission gets


class ReportReason(StrEnum):
    CHILD_ABUSE = "child_abuse"  # sends the image down the child-safety path
    SEXUAL = "sexual"
    VIOLENCE = "violence"
    HATE = "hate"
    HARASSMENT = "harassment"
    SPAM = "spam"
    OTHER = "other"


@dataclass(frozen=True)
class CommunityReport:
    """What a member said about an image, as the site passes it on."""

    reporter_id: str
    reason: ReportReason
    reporter_trust: TrustLevel | None = None
    note: str | None = None


@dataclass(frozen=True)
class ReportOutcome:
    report_id: int
    submission_id: str
    # The reporter had reported this submission already; nothing changed.
    duplicate: bool
    weight: float
    # What the reports since the last moderator decision weigh together, this one included.
    total_weight: float
    # This report passed the threshold: the site was asked to hide the image.
    hide_requested: bool
    decision: str
    review_state: str
    # Vigil had never seen the reported image and screened it for this report.
    screened: bool = False

    @property
    def hidden(self) -> bool:
        return self.decision != Verdict.ALLOW.value


def report_weight(settings: ReportSettings, trust: TrustLevel | None) -> float:
    """What one report counts for; a trust level the settings leave out counts as unknown."""
    if trust is None:
        return settings.unknown_weight
    return settings.weights.get(trust.value, settings.unknown_weight)


@dataclass(frozen=True)
class _Tally:
    """The reports that count now: those since the last moderator decision."""

    reports: int
    weight: float
    child_abuse_weight: float
    by_reason: dict[str, int]

    def reaches(self, settings: ReportSettings) -> bool:
        return (
            self.weight >= settings.hide_at
            or self.child_abuse_weight >= settings.child_safety_hide_at
        )

    @property
    def alleges_child_abuse(self) -> bool:
        return self.by_reason.get(ReportReason.CHILD_ABUSE.value, 0) > 0


def _tally(session: Session, submission: Submission) -> _Tally:
    query = select(Report.reason, Report.weight).where(Report.submission_id == submission.id)
    if submission.decided_at is not None:
        query = query.where(Report.created_at > submission.decided_at)
    rows = session.execute(query).all()
    child_abuse = ReportReason.CHILD_ABUSE.value
    return _Tally(
        reports=len(rows),
        weight=sum(row.weight for row in rows),
        child_abuse_weight=sum(row.weight for row in rows if row.reason == child_abuse),
        by_reason=dict(sorted(Counter(row.reason for row in rows).items())),
    )


def _published(submission: Submission) -> bool:
    """Shown on the site now: allowed, and not back in the review queue."""
    return submission.decision == Verdict.ALLOW.value and submission.review_state != REVIEW_PENDING


def record_report(
    session: Session,
    settings: ReportSettings,
    site: Site,
    submission: Submission,
    report: CommunityReport,
    *,
    actor: str,
    now: datetime,
) -> ReportOutcome:
    """Record a report in the caller's transaction; at the threshold, ask the site to hide.

    The caller holds the submission's row lock, so concurrent reports on one image are counted
    one after another and the site is asked to hide it once.
    """
    earlier = session.scalar(
        select(Report).where(
            Report.submission_id == submission.id, Report.reporter_id == report.reporter_id
        )
    )
    if earlier is not None:
        return ReportOutcome(
            report_id=earlier.id,
            submission_id=submission.id,
            duplicate=True,
            weight=earlier.weight,
            total_weight=_tally(session, submission).weight,
            hide_requested=False,
            decision=submission.decision,
            review_state=submission.review_state,
        )
    weight = report_weight(settings, report.reporter_trust)
    trust = report.reporter_trust.value if report.reporter_trust is not None else None
    row = Report(
        submission_id=submission.id,
        site_id=site.id,
        reporter_id=report.reporter_id,
        reporter_trust=trust,
        reason=report.reason.value,
        note=report.note,
        weight=weight,
        created_at=now,
    )
    session.add(row)
    session.flush()  # the report's id, and the unique constraint checked now
    site_signals.record_report(
        session,
        site_id=site.id,
        submission_id=submission.id,
        uploader_id=submission.uploader_id,
        weight=weight,
        now=now,
    )
    audit.append(
        session,
        actor,
        RECEIVED_EVENT,
        submission.id,
        {
            "report_id": row.id,
            "reporter_id": report.reporter_id,
            "reporter_trust": trust,
            "reason": report.reason.value,
            "note": report.note,
            "weight": weight,
        },
        at=now,
    )
    tally = _tally(session, submission)
    hide = _published(submission) and tally.reaches(settings)
    if hide:
        _request_hide(session, site, submission, tally, actor=actor, now=now)
    elif submission.review_state == REVIEW_PENDING and tally.alleges_child_abuse:
        _route_to_child_safety(session, submission, tally, actor=actor, now=now)
    return ReportOutcome(
        report_id=row.id,
        submission_id=submission.id,
        duplicate=False,
        weight=weight,
        total_weight=tally.weight,
        hide_requested=hide,
        decision=submission.decision,
        review_state=submission.review_state,
    )


def _request_hide(
    session: Session,
    site: Site,
    submission: Submission,
    tally: _Tally,
    *,
    actor: str,
    now: datetime,
) -> None:
    """Hold a published image for review and ask the site to take it down meanwhile."""
    child_safety = tally.alleges_child_abuse
    wanted = Priority.URGENT if child_safety else Priority.HIGH
    submission.decision = Verdict.HOLD.value
    submission.review_state = REVIEW_PENDING
    submission.hide_requested_at = now
    submission.priority = max(submission.priority, wanted.rank)
    if child_safety:
        submission.flags = sorted({*submission.flags, CHILD_SAFETY})
    reports = "report" if tally.reports == 1 else "reports"
    reason: dict[str, Any] = {
        "code": COMMUNITY_REPORTS,
        "verdict": Verdict.HOLD.value,
        "message": (
            f"{tally.reports} community {reports} (weight {tally.weight:g}) asked for this image "
            "to be hidden until a moderator decides"
        ),
        "reports": tally.reports,
        "weight": tally.weight,
        "report_reasons": tally.by_reason,
    }
    # A new list, so the JSON column sees the change (in-place appends go unnoticed).
    submission.reasons = [*submission.reasons, reason]
    details = {
        "reports": tally.reports,
        "weight": tally.weight,
        "reasons": tally.by_reason,
        "priority": Priority.of_rank(submission.priority).value,
        "flags": submission.flags,
    }
    audit.append(session, actor, HIDE_REQUESTED_EVENT, submission.id, details, at=now)
    if site.webhook_url:
        enqueue_event(
            session,
            site.id,
            HIDE_REQUESTED_EVENT,
            {
                "submission_id": submission.id,
                "ref": submission.ref,
                "uploader_id": submission.uploader_id,
                "reports": tally.reports,
                "reasons": tally.by_reason,
                "weight": tally.weight,
                "child_safety": child_safety,
                "requested_at": now.isoformat(),
            },
            now,
        )


def _route_to_child_safety(
    session: Session, submission: Submission, tally: _Tally, *, actor: str, now: datetime
) -> None:
    """An image already waiting for review that members say shows a child abused: only the
    child-safety team should open it."""
    if submission.priority >= Priority.URGENT.rank and CHILD_SAFETY in submission.flags:
        return
    submission.priority = Priority.URGENT.rank
    submission.flags = sorted({*submission.flags, CHILD_SAFETY})
    audit.append(
        session,
        actor,
        ESCALATED_EVENT,
        submission.id,
        {"by": COMMUNITY_REPORTS, "reports": tally.reports, "reasons": tally.by_reason},
        at=now,
    )


def receive_report(
    screening: ScreeningService,
    site: SiteRef,
    report: CommunityReport,
    *,
    submission_id: str | None,
    image: bytes | None,
    uploader: UploaderContext,
    actor: str,
) -> ReportOutcome:
    """Record a report on one of the site's submissions, named by id or by the image itself.

    An image Vigil never screened is screened now, so the report has a submission (hashes, a
    decision) to count against; ``uploader`` is who posted it, when the site knows. A reported
    image Vigil kept no copy of (it was allowed) is stored, so a moderator can see it.
    """
    screened = False
    if image is not None:
        submission_id = _submission_of_image(screening, site, image, submission_id)
        if submission_id is None:
            screening_outcome = screening.screen(
                site, image, uploader, idempotency_key=None, actor=actor
            )
            submission_id, screened = screening_outcome.submission.id, True
    if submission_id is None:
        raise InvalidRequest("name the submission reported (submission_id) or send its image")
    try:
        outcome = _record(screening, site, report, submission_id, image, actor)
    except IntegrityError:
        # The row lock makes the duplicate check safe; should two requests by one reporter still
        # race past it, the unique constraint stops the second, which now finds the first.
        outcome = _record(screening, site, report, submission_id, image, actor)
    return replace(outcome, screened=screened)


def _submission_of_image(
    screening: ScreeningService, site: SiteRef, image: bytes, submission_id: str | None
) -> str | None:
    """The submission these exact bytes belong to; None if Vigil never screened them."""
    digest = hashlib.sha256(image).hexdigest()
    with screening.database.session() as session:
        if submission_id is None:
            found = latest_with_sha256(session, site.id, digest)
            return found.id if found is not None else None
        named = get_submission(session, submission_id, site_id=site.id)
        if named.sha256 != digest:
            raise InvalidRequest(
                f"the image sent is not the one submission {submission_id} screened "
                "(its SHA-256 differs); send the submission's own image, or only one of the two"
            )
        return named.id


def _record(
    screening: ScreeningService,
    site: SiteRef,
    report: CommunityReport,
    submission_id: str,
    image: bytes | None,
    actor: str,
) -> ReportOutcome:
    now = screening.clock.now()
    stored: str | None = None
    try:
        with screening.database.write_session() as session:
            submission = get_submission(session, submission_id, site_id=site.id, lock=True)
            site_row = session.get(Site, site.id)
            if site_row is None:
                raise NotFound(f"site {site.name!r} no longer exists")
            outcome = record_report(
                session,
                screening.settings.reports,
                site_row,
                submission,
                report,
                actor=actor,
                now=now,
            )
            if image is not None and not outcome.duplicate and submission.image_path is None:
                # Written under the row lock, so a concurrent report cannot see the row point at
                # a file another request may still remove; removed again if the commit fails.
                stored = screening.images.save(submission.id, image)
                submission.image_path = stored
    except BaseException:
        if stored is not None:
            screening.images.delete(stored)
        raise
    return outcome
