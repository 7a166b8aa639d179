"""The append-only audit log: who did what to which subject, and when."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.store.models import AuditEvent


def append(
    session: Session,
    actor: str,
    action: str,
    subject: str | None,
    details: dict[str, Any],
    *,
    at: datetime | None = None,
) -> AuditEvent:
    """Record an event (``at``: when it happened, if not now: a replay's simulated clock)."""
    event = AuditEvent(actor=actor, action=action, subject=subject, details=details)
    if at is not None:
        event.at = at
    session.add(event)
    return event


def events_for(session: Session, subject: str) -> Sequence[AuditEvent]:
    return session.scalars(
        select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.id)
    ).all()
