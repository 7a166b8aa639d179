"""The webhook outbox: rows written with the change they announce, claimed and delivered later.

Several workers (or API processes) may poll the same outbox: a row is *leased* by an atomic
conditional update, so one delivery attempt runs at a time and a crashed worker's lease expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from vigil.store.models import WebhookDelivery

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def enqueue(
    session: Session,
    site_id: int,
    event_type: str,
    body: str,
    event_id: str | None = None,
    *,
    now: datetime | None = None,
) -> WebhookDelivery:
    """Write a delivery, due at once (``now``: the time of the change it announces)."""
    delivery = WebhookDelivery(
        event_id=event_id or str(uuid.uuid4()),
        site_id=site_id,
        event_type=event_type,
        body=body,
        status=PENDING,
        attempts=0,
    )
    if now is not None:
        delivery.created_at = delivery.next_attempt_at = now
    session.add(delivery)
    return delivery


def due_ids(session: Session, now: datetime, limit: int) -> Sequence[int]:
    return session.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    ).all()


def claim(
    session: Session, delivery_id: int, now: datetime, lease: timedelta
) -> WebhookDelivery | None:
    """Lease one due delivery; None if another worker holds it or it is no longer due."""
    claimed = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
        )
        .values(lease_until=now + lease)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def record_success(session: Session, delivery_id: int, now: datetime) -> None:
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(
            status=DELIVERED,
            delivered_at=now,
            attempts=WebhookDelivery.attempts + 1,
            lease_until=None,
            last_error=None,
        )
    )


def record_failure(
    session: Session, delivery_id: int, error: str, next_attempt_at: datetime | None
) -> None:
    """A failed attempt: retried at ``next_attempt_at``, or given up on when that is None."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(
            status=PENDING if next_attempt_at else FAILED,
            attempts=WebhookDelivery.attempts + 1,
            next_attempt_at=next_attempt_at or WebhookDelivery.next_attempt_at,
            lease_until=None,
            last_error=error[:2000],
        )
    )
