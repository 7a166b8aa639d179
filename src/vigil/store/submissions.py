"""Screened submissions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.errors import NotFound
from vigil.store.models import Submission


def get_submission(
    session: Session, submission_id: str, *, site_id: int | None = None, lock: bool = False
) -> Submission:
    """The submission, or :class:`NotFound`; with ``site_id``, only one of that site's.

    ``lock``: hold the row until the transaction ends (PostgreSQL ``FOR UPDATE``; SQLite's
    ``write_session`` already holds the whole database), so read-then-write changes serialise.
    """
    # Not a submission id at all (PostgreSQL would refuse the NUL outright).
    if len(submission_id) > 36 or "\x00" in submission_id:
        raise NotFound(f"no submission {submission_id[:40]!r}")
    submission = session.get(Submission, submission_id, with_for_update=lock)
    if submission is None or (site_id is not None and submission.site_id != site_id):
        raise NotFound(f"no submission {submission_id!r}")
    return submission


def find_by_idempotency_key(session: Session, site_id: int, key: str) -> Submission | None:
    return session.scalar(
        select(Submission).where(Submission.site_id == site_id, Submission.idempotency_key == key)
    )


def latest_with_sha256(session: Session, site_id: int, sha256: str) -> Submission | None:
    """The site's newest submission of exactly these bytes, if Vigil ever screened them."""
    return session.scalar(
        select(Submission)
        .where(Submission.site_id == site_id, Submission.sha256 == sha256)
        .order_by(Submission.created_at.desc(), Submission.id.desc())
        .limit(1)
    )
