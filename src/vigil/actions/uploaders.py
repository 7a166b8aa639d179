"""What moderators do to an uploader: suspend them, and clean up everything they uploaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.actions.submissions import REVIEW_PENDING, apply_review_decision
from vigil.actions.webhooks import enqueue_event
from vigil.policy import Priority, Verdict, for_child_safety
from vigil.store import audit
from vigil.store import uploaders as uploader_store
from vigil.store.models import Site, Submission

SUSPENDED_EVENT = "uploader.suspended"
REINSTATED_EVENT = "uploader.reinstated"
TAKEDOWN_EVENT = "uploader.takedown_requested"


def suspend_uploader(
    session: Session,
    site: Site,
    uploader_id: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> bool:
    """Block the uploader's images from now on and ask the site to suspend the account.

    Returns whether the uploader was newly suspended (the site is told once).
    """
    _, new = uploader_store.suspend(
        session, site.id, uploader_id, reason=reason, actor=actor, now=now
    )
    if not new:
        return False
    audit.append(
        session, actor, SUSPENDED_EVENT, f"{site.name}/{uploader_id}", {"reason": reason}, at=now
    )
    if site.webhook_url:
        enqueue_event(
            session,
            site.id,
            SUSPENDED_EVENT,
            {"uploader_id": uploader_id, "reason": reason, "suspended_at": now.isoformat()},
            now,
        )
    return True


def reinstate_uploader(
    session: Session, site: Site, uploader_id: str, *, actor: str, now: datetime
) -> bool:
    """Lift a suspension (a mistake, or an account recovered); the site is told. Returns
    whether there was one to lift."""
    if not uploader_store.lift(session, site.id, uploader_id, now):
        return False
    audit.append(session, actor, REINSTATED_EVENT, f"{site.name}/{uploader_id}", {}, at=now)
    if site.webhook_url:
        enqueue_event(
            session,
            site.id,
            REINSTATED_EVENT,
            {"uploader_id": uploader_id, "reinstated_at": now.isoformat()},
            now,
        )
    return True


@dataclass
class CleanUp:
    """What a clean-up did."""

    rejected: list[str] = field(default_factory=list)  # pending submissions now rejected
    # Pending items that may show a child: they wait for the child-safety team, who decide
    # whether each is illegal (evidence, reporting), which a bulk rejection would skip.
    left_for_child_safety: list[str] = field(default_factory=list)
    taken_down: list[str] = field(default_factory=list)  # published ones the site must remove
    suspended: list[str] = field(default_factory=list)  # uploaders newly suspended


def clean_up_uploaders(
    session: Session,
    site: Site,
    uploader_ids: Sequence[str],
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> CleanUp:
    """Reject everything of these uploaders still awaiting review, ask the site to take down
    what it already published, and suspend them: one action during an attack.

    Items that may show a child stay in the queue for the child-safety team.
    """
    result = CleanUp()
    submissions = session.scalars(
        select(Submission)
        .where(Submission.site_id == site.id, Submission.uploader_id.in_(list(uploader_ids)))
        .order_by(Submission.created_at)
        .with_for_update()
    ).all()
    published: dict[str, list[dict[str, str | None]]] = {}
    for submission in submissions:
        urgent = for_child_safety(Priority.of_rank(submission.priority), submission.flags)
        if submission.review_state == REVIEW_PENDING and urgent:
            result.left_for_child_safety.append(submission.id)
        elif submission.review_state == REVIEW_PENDING:
            apply_review_decision(
                session, submission, site, Verdict.BLOCK, actor=actor, note=reason, now=now
            )
            result.rejected.append(submission.id)
        elif submission.decision == Verdict.ALLOW.value:
            assert submission.uploader_id is not None
            published.setdefault(submission.uploader_id, []).append(
                {"submission_id": submission.id, "ref": submission.ref}
            )
            result.taken_down.append(submission.id)
    for uploader_id, items in published.items():
        audit.append(
            session,
            actor,
            TAKEDOWN_EVENT,
            f"{site.name}/{uploader_id}",
            {"submissions": [item["submission_id"] for item in items], "reason": reason},
            at=now,
        )
        if site.webhook_url:
            enqueue_event(
                session,
                site.id,
                TAKEDOWN_EVENT,
                {"uploader_id": uploader_id, "reason": reason, "submissions": items},
                now,
            )
    for uploader_id in dict.fromkeys(uploader_ids):
        if suspend_uploader(session, site, uploader_id, reason=reason, actor=actor, now=now):
            result.suspended.append(uploader_id)
    return result
