"""The pages outbox: messages to on-call channels, claimed and delivered like webhooks.

Rows are written by :mod:`vigil.actions.incidents` in the transaction that opens, escalates,
acknowledges or resolves an incident. Several workers may poll the outbox: a row is *leased* by an
atomic conditional update, so one attempt runs at a time and a crashed worker's lease expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vigil.store import leases
from vigil.store.leases import CANCELLED as CANCELLED
from vigil.store.leases import DELIVERED as DELIVERED
from vigil.store.leases import FAILED as FAILED
from vigil.store.leases import PENDING as PENDING
from vigil.store.models import Page


def due_ids(session: Session, now: datetime, limit: int) -> Sequence[int]:
    """Pending pages whose next attempt is due and that no worker holds, oldest first."""
    return leases.due_ids(session, Page, now, limit)


def claim(session: Session, page_id: int, now: datetime, lease: timedelta) -> Page | None:
    """Lease one due page; None if another worker holds it or it is no longer pending."""
    return leases.claim(session, Page, page_id, now, lease)


def record_success(session: Session, page_id: int, now: datetime) -> None:
    leases.record_delivery(session, Page, page_id, sent_at=now)


def record_failure(
    session: Session, page_id: int, error: str, next_attempt_at: datetime | None
) -> None:
    """A failed attempt: retried at ``next_attempt_at``, or given up on when that is None."""
    leases.record_failure(session, Page, page_id, error, next_attempt_at)


def cancel(session: Session, page_id: int, reason: str) -> None:
    """Drop a page that must no longer be sent (its incident was acknowledged or resolved)."""
    session.execute(
        update(Page)
        .where(Page.id == page_id)
        .values(status=CANCELLED, lease_until=None, last_error=reason[:2000])
        .execution_options(synchronize_session=False)
    )


def channel_heard_of(session: Session, incident_id: int, channel: str) -> bool:
    """Whether a trigger page about the incident reached the channel, or still may."""
    return (
        session.scalar(
            select(Page.id)
            .where(
                Page.incident_id == incident_id,
                Page.channel == channel,
                Page.event == "trigger",
                Page.status.in_([PENDING, DELIVERED]),
            )
            .limit(1)
        )
        is not None
    )
