"""The review queue: what waits, who is looking at what, and the decisions moderators make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from vigil.actions.child_safety import reject_as_illegal
from vigil.actions.images import ImageStore
from vigil.actions.submissions import REVIEW_PENDING, apply_review_decision
from vigil.config import Settings
from vigil.errors import Conflict, Forbidden
from vigil.evidence.vault import Vault
from vigil.policy import Verdict
from vigil.policy.decision import CHILD_SAFETY, Priority, for_child_safety
from vigil.review.accounts import Permission
from vigil.review.web import Reviewer
from vigil.store import audit
from vigil.store.models import Site, Submission, User

# Possible child sexual abuse waits at this priority, for the child-safety team only.
CHILD_SAFETY_RANK = Priority.URGENT.rank


class ReviewAction(StrEnum):
    APPROVE = "approve"  # publish
    REJECT = "reject"
    ILLEGAL = "illegal"  # reject as illegal: the child-safety path
    ESCALATE = "escalate"  # a moderator hands it to the child-safety team


def needs_child_safety(submission: Submission) -> bool:
    return for_child_safety(Priority.of_rank(submission.priority), submission.flags)


def may_handle(reviewer: Reviewer, submission: Submission) -> bool:
    if not reviewer.may(Permission.REVIEW):
        return False
    return not needs_child_safety(submission) or reviewer.may(Permission.CHILD_SAFETY)


@dataclass(frozen=True)
class QueueItem:
    submission: Submission
    site_name: str
    claimed_by: str | None  # a live claim by someone


def pending(session: Session, now: datetime, *, limit: int = 200) -> list[QueueItem]:
    """Held items, most severe first, then oldest first."""
    rows = session.execute(
        select(Submission, Site.name, User.name)
        .join(Site, Site.id == Submission.site_id)
        .outerjoin(User, User.id == Submission.claimed_by)
        .where(Submission.review_state == REVIEW_PENDING)
        .order_by(Submission.priority.desc(), Submission.created_at, Submission.id)
        .limit(limit)
    ).all()
    return [
        QueueItem(
            submission,
            site_name,
            claimant if claim_live(submission, now) else None,
        )
        for submission, site_name, claimant in rows
    ]


@dataclass(frozen=True)
class QueueSummary:
    size: int
    oldest: datetime | None
    child_safety: int


def summary(session: Session) -> QueueSummary:
    size, oldest, urgent = session.execute(
        select(
            func.count(),
            func.min(Submission.created_at),
            func.count().filter(Submission.priority >= CHILD_SAFETY_RANK),
        ).where(Submission.review_state == REVIEW_PENDING)
    ).one()
    return QueueSummary(int(size or 0), oldest, int(urgent or 0))


def claim_live(submission: Submission, now: datetime) -> bool:
    """Someone has the item open and their claim has not lapsed."""
    return (
        submission.claimed_by is not None
        and submission.claim_expires_at is not None
        and submission.claim_expires_at > now
    )


def claim(
    session: Session, submission_id: str, reviewer: Reviewer, now: datetime, minutes: float
) -> bool:
    """Take the item for ``reviewer`` unless someone else holds a live claim: one statement,
    so two moderators (or two replicas) can never both win."""
    result = session.execute(
        update(Submission)
        .where(
            Submission.id == submission_id,
            Submission.review_state == REVIEW_PENDING,
            or_(
                Submission.claimed_by.is_(None),
                Submission.claimed_by == reviewer.user_id,
                Submission.claim_expires_at <= now,
            ),
        )
        .values(claimed_by=reviewer.user_id, claim_expires_at=now + timedelta(minutes=minutes))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, submission_id: str, reviewer: Reviewer) -> None:
    session.execute(
        update(Submission)
        .where(Submission.id == submission_id, Submission.claimed_by == reviewer.user_id)
        .values(claimed_by=None, claim_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def claim_next(
    session: Session, reviewer: Reviewer, now: datetime, minutes: float, *, skip: str | None = None
) -> str | None:
    """Claim the most urgent item this reviewer may handle that no one else is reviewing."""
    query = (
        select(Submission.id)
        .where(
            Submission.review_state == REVIEW_PENDING,
            or_(
                Submission.claimed_by.is_(None),
                Submission.claimed_by == reviewer.user_id,
                Submission.claim_expires_at <= now,
            ),
        )
        .order_by(Submission.priority.desc(), Submission.created_at, Submission.id)
        .limit(20)
    )
    if not reviewer.may(Permission.CHILD_SAFETY):
        query = query.where(Submission.priority < CHILD_SAFETY_RANK)
    if skip is not None:
        query = query.where(Submission.id != skip)
    for submission_id in session.scalars(query).all():
        if claim(session, submission_id, reviewer, now, minutes):
            return submission_id
    return None


def open_for_review(
    session: Session, submission: Submission, reviewer: Reviewer, settings: Settings, now: datetime
) -> bool:
    """Claim the item if this reviewer may decide it now; False means look, don't touch."""
    if submission.review_state != REVIEW_PENDING or not may_handle(reviewer, submission):
        return False
    claimed = claim(session, submission.id, reviewer, now, settings.review.claim_minutes)
    session.refresh(submission)
    return claimed


def decide(
    session: Session,
    submission: Submission,
    site: Site,
    reviewer: Reviewer,
    action: ReviewAction,
    settings: Settings,
    vault: Vault,
    images: ImageStore,
    *,
    note: str | None,
    now: datetime,
) -> str | None:
    """Carry out a moderator's decision; returns an image file no longer needed, if any."""
    if submission.review_state != REVIEW_PENDING:
        raise Conflict("this item was decided already")
    if not may_handle(reviewer, submission):
        raise Forbidden("this item may show a child: it is for the child-safety team")
    if not claim(session, submission.id, reviewer, now, settings.review.claim_minutes):
        raise Conflict("another moderator is reviewing this item")
    session.refresh(submission)
    if action is ReviewAction.ESCALATE:
        submission.priority = CHILD_SAFETY_RANK
        submission.flags = sorted({*submission.flags, CHILD_SAFETY})
        submission.claimed_by = submission.claim_expires_at = None
        audit.append(session, reviewer.actor, "submission.escalated", submission.id, {"note": note})
        return None
    if action is ReviewAction.ILLEGAL:
        if not reviewer.may(Permission.CHILD_SAFETY):
            raise Forbidden("only the child-safety team rejects an image as illegal; escalate it")
        rejection = reject_as_illegal(
            session,
            submission,
            site,
            settings,
            vault,
            images,
            actor=reviewer.actor,
            note=note,
            now=now,
        )
        return rejection.released_image
    verdict = Verdict.ALLOW if action is ReviewAction.APPROVE else Verdict.BLOCK
    return apply_review_decision(
        session, submission, site, verdict, actor=reviewer.actor, note=note, now=now
    )


def uploader_submissions(
    session: Session, site_id: int, uploader_id: str, *, limit: int = 500
) -> Sequence[Submission]:
    return session.scalars(
        select(Submission)
        .where(Submission.site_id == site_id, Submission.uploader_id == uploader_id)
        .order_by(Submission.created_at.desc())
        .limit(limit)
    ).all()
