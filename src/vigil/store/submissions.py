"""Screened submissions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.errors import NotFound
from vigil.store.models import Submission


def get_submission(
    session: Session, submission_id: str, *, site_id: int | None = None
) -> Submission:
    """The submission, or :class:`NotFound`; with ``site_id``, only one of that site's."""
    # Not a submission id at all (PostgreSQL would refuse the NUL outright).
    if len(submission_id) > 36 or "\x00" in submission_id:
        raise NotFound(f"no submission {submission_id[:40]!r}")
    submission = session.get(Submission, submission_id)
    if submission is None or (site_id is not None and submission.site_id != site_id):
        raise NotFound(f"no submission {submission_id!r}")
    return submission


def find_by_idempotency_key(session: Session, site_id: int, key: str) -> Submission | None:
    return session.scalar(
        select(Submission).where(Submission.site_id == site_id, Submission.idempotency_key == key)
    )
