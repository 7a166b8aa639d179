"""Uploaders a moderator suspended: Vigil blocks their images from then on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.store.models import UploaderSuspension


def find_suspension(session: Session, site_id: int, uploader_id: str) -> UploaderSuspension | None:
    """The uploader's suspension if one is in force."""
    return session.scalar(
        select(UploaderSuspension).where(
            UploaderSuspension.site_id == site_id,
            UploaderSuspension.uploader_id == uploader_id,
            UploaderSuspension.lifted_at.is_(None),
        )
    )


def suspend(
    session: Session, site_id: int, uploader_id: str, *, reason: str, actor: str, now: datetime
) -> tuple[UploaderSuspension, bool]:
    """Suspend the uploader; returns the suspension and whether it is new.

    Safe against a second transaction suspending the same uploader at the same moment (two
    known images from one bot): the insert runs in a savepoint, and the loser reads the
    winner's row instead of failing its whole screening.
    """
    query = (
        select(UploaderSuspension)
        .where(UploaderSuspension.site_id == site_id, UploaderSuspension.uploader_id == uploader_id)
        .with_for_update()
    )
    row = session.scalar(query)
    if row is not None and row.lifted_at is None:
        return row, False
    if row is None:
        row = UploaderSuspension(
            site_id=site_id,
            uploader_id=uploader_id,
            reason=reason,
            suspended_by=actor,
            suspended_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            row = session.scalar(query.execution_options(populate_existing=True))
            assert row is not None
            if row.lifted_at is None:
                return row, False
    row.reason = reason
    row.suspended_by = actor
    row.suspended_at = now
    row.lifted_at = None
    session.flush()
    return row, True


def lift(session: Session, site_id: int, uploader_id: str, now: datetime) -> bool:
    row = find_suspension(session, site_id, uploader_id)
    if row is None:
        return False
    row.lifted_at = now
    return True
