"""The site status page: what screening did hour by hour, the queue, the banks, the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, select
from sqlalchemy.orm import Session

from vigil.policy import Verdict
from vigil.store.models import AuditEvent, Submission

HOURS = 24
AUDIT_PAGE = 100


@dataclass(frozen=True)
class HourCounts:
    start: datetime
    allowed: int
    held: int
    blocked: int

    @property
    def screened(self) -> int:
        return self.allowed + self.held + self.blocked


def hourly_counts(session: Session, now: datetime, hours: int = HOURS) -> list[HourCounts]:
    """Screenings per hour by their first decision, oldest hour first, the current one last."""
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=hours - 1)
    bucket = _hour_bucket(session)
    rows = session.execute(
        select(bucket, Submission.initial_decision, func.count())
        .where(Submission.created_at >= first)
        .group_by(bucket, Submission.initial_decision)
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for hour, decision, count in rows:
        index = int(hour)
        counts.setdefault(index, {})[decision] = int(count)
    base = _hour_number(first)
    result = []
    for offset in range(hours):
        found = counts.get(base + offset, {})
        result.append(
            HourCounts(
                first + timedelta(hours=offset),
                found.get(Verdict.ALLOW.value, 0),
                found.get(Verdict.HOLD.value, 0),
                found.get(Verdict.BLOCK.value, 0),
            )
        )
    return result


def _hour_number(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


def _hour_bucket(session: Session) -> ColumnElement[int]:
    """Hours since the epoch, computed by the database (so only 24 x 3 rows come back)."""
    column = Submission.created_at
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", column) / 3600), BigInteger)
    # SQLite keeps naive UTC text, which strftime('%s') reads as UTC.
    return cast(func.strftime("%s", column), Integer) // 3600


@dataclass(frozen=True)
class Bar:
    """One hour's stacked bar in the chart, in SVG units."""

    x: float
    width: float
    segments: tuple[tuple[str, float, float, int], ...]  # (kind, y, height, count)
    label: str
    hour: HourCounts


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    top: int
    bars: tuple[Bar, ...]


def chart(hours: Sequence[HourCounts], width: int = 720, height: int = 200) -> Chart:
    """Stacked bars (allowed, held, blocked) scaled to the busiest hour."""
    top = max((hour.screened for hour in hours), default=0) or 1
    slot = width / max(len(hours), 1)
    bars = []
    for index, hour in enumerate(hours):
        y = float(height)
        segments = []
        for kind, count in (
            ("allowed", hour.allowed),
            ("held", hour.held),
            ("blocked", hour.blocked),
        ):
            size = height * count / top
            y = max(0.0, y - size)
            segments.append((kind, round(y, 2), round(size, 2), count))
        bars.append(
            Bar(
                round(index * slot + 1, 2),
                round(slot - 2, 2),
                tuple(segments),
                hour.start.strftime("%H"),
                hour,
            )
        )
    return Chart(width, height, top, tuple(bars))


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    before_id: int | None = None


def audit_page(session: Session, wanted: AuditFilter) -> list[AuditEvent]:
    """Newest first, ``AUDIT_PAGE`` at a time (and one more, which says there is an older
    page); ``before_id`` pages back."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(AUDIT_PAGE + 1)
    if wanted.actor:
        query = query.where(AuditEvent.actor.contains(wanted.actor, autoescape=True))
    if wanted.action:
        query = query.where(AuditEvent.action == wanted.action)
    if wanted.subject:
        query = query.where(AuditEvent.subject.contains(wanted.subject, autoescape=True))
    if wanted.before_id is not None:
        query = query.where(AuditEvent.id < wanted.before_id)
    return list(session.scalars(query).all())


def audit_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
