"""Leased outboxes: rows written with the change they announce, delivered (and retried) later.

Webhooks to sites, pages to on-call staff and reports to NCMEC work the same way. Several
workers (or API processes) may poll one outbox: a row is *leased* by an atomic conditional
update, so one delivery attempt runs at a time, and a crashed worker's lease simply expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from vigil.store.models import AuthorityReport, Page, WebhookDelivery

PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"

Row = TypeVar("Row", WebhookDelivery, Page, AuthorityReport)


def due_ids(session: Session, model: type[Row], now: datetime, limit: int) -> Sequence[int]:
    """Pending rows whose next attempt is due and that no worker holds, oldest first."""
    return session.scalars(
        select(model.id)
        .where(
            model.status == PENDING,
            model.next_attempt_at <= now,
            or_(model.lease_until.is_(None), model.lease_until < now),
        )
        .order_by(model.next_attempt_at, model.id)
        .limit(limit)
    ).all()


def claim(
    session: Session, model: type[Row], row_id: int, now: datetime, lease: timedelta
) -> Row | None:
    """Lease one due row; None if another worker holds it or it is no longer pending."""
    claimed = session.execute(
        update(model)
        .where(
            model.id == row_id,
            model.status == PENDING,
            or_(model.lease_until.is_(None), model.lease_until < now),
        )
        .values(lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(model, row_id, populate_existing=True)


def record_failure(
    session: Session,
    model: type[Row],
    row_id: int,
    error: str,
    next_attempt_at: datetime | None,
    *,
    held_until: datetime | None = None,
) -> bool:
    """A failed attempt: retried at ``next_attempt_at``, or given up on when that is None.

    With ``held_until`` (the lease the attempt holds), nothing is written, and False returned,
    if the lease has since passed to another worker: its attempt is the one that counts now.
    """
    held = () if held_until is None else (model.lease_until == held_until,)
    failed = session.execute(
        update(model)
        .where(model.id == row_id, *held)
        .values(
            status=PENDING if next_attempt_at else FAILED,
            attempts=model.attempts + 1,
            next_attempt_at=next_attempt_at or model.next_attempt_at,
            lease_until=None,
            last_error=error[:2000],
        )
        .execution_options(synchronize_session=False)
    )
    return failed.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def record_delivery(session: Session, model: type[Row], row_id: int, **stamp: datetime) -> None:
    """A successful attempt; ``stamp`` names the row's own delivery-time column."""
    session.execute(
        update(model)
        .where(model.id == row_id)
        .values(
            status=DELIVERED,
            attempts=model.attempts + 1,
            lease_until=None,
            last_error=None,
            **stamp,
        )
        .execution_options(synchronize_session=False)
    )
