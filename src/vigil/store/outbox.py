"""The webhook outbox: rows written with the change they announce, claimed and delivered later.

Several workers (or API processes) may poll the same outbox: a row is *leased* by an atomic
conditional update, so one delivery attempt runs at a time and a crashed worker's lease expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from vigil.store import leases
from vigil.store.leases import PENDING
from vigil.store.models import WebhookDelivery


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
    return leases.due_ids(session, WebhookDelivery, now, limit)


def claim(
    session: Session, delivery_id: int, now: datetime, lease: timedelta
) -> WebhookDelivery | None:
    """Lease one due delivery; None if another worker holds it or it is no longer due."""
    return leases.claim(session, WebhookDelivery, delivery_id, now, lease)


def record_success(session: Session, delivery_id: int, now: datetime) -> None:
    leases.record_delivery(session, WebhookDelivery, delivery_id, delivered_at=now)


def record_failure(
    session: Session, delivery_id: int, error: str, next_attempt_at: datetime | None
) -> None:
    """A failed attempt: retried at ``next_attempt_at``, or given up on when that is None."""
    leases.record_failure(session, WebhookDelivery, delivery_id, error, next_attempt_at)
