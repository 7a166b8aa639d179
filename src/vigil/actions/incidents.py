"""Incidents: what on-call staff must know now. Opening one pages the first tier; nobody
acknowledging it pages the next; further triggers join the open incident instead of paging again.

Pages are rows in the ``pages`` outbox, written in the transaction that opens or escalates the
incident and delivered by :mod:`vigil.workers.pages`.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.config import PagingSettings
from vigil.errors import Conflict
from vigil.policy import Priority
from vigil.store import audit
from vigil.store.models import Incident, Page, Site, Submission

SYSTEM_ACTOR = "vigil"


class IncidentKind(StrEnum):
    LOCKDOWN = "lockdown"  # the rules raised a site's lockdown level
    KNOWN_ILLEGAL = "known_illegal"  # an upload matched a block bank
    URGENT_UNREVIEWED = "urgent_unreviewed"  # a possible-minor item has waited too long


class PageEvent(StrEnum):
    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


def open_key(site_id: int, kind: IncidentKind, scope: str = "") -> str:
    return f"{site_id}:{kind.value}:{scope}"


def find_open(session: Session, key: str) -> Incident | None:
    return session.scalar(select(Incident).where(Incident.open_key == key))


def raise_incident(
    session: Session,
    paging: PagingSettings,
    site: Site,
    kind: IncidentKind,
    title: str,
    details: dict[str, Any],
    now: datetime,
    *,
    scope: str = "",
) -> tuple[Incident, bool]:
    """Open an incident and page the first tier, or join the one already open for the same
    cause. Returns the incident and whether it is new."""
    key = open_key(site.id, kind, scope)
    existing = find_open(session, key)
    if existing is None:
        incident = Incident(
            site_id=site.id,
            kind=kind.value,
            open_key=key,
            title=title[:300],
            details=details,
            trigger_count=1,
            opened_at=now,
            last_triggered_at=now,
            tier=-1,
            next_tier_at=_tier_due(paging, 0, now) if paging.tiers else None,
            ack_token=secrets.token_urlsafe(32),
        )
        try:
            # A savepoint: another process may open the same incident at the same moment.
            with session.begin_nested():
                session.add(incident)
        except IntegrityError:
            existing = find_open(session, key)
            if existing is None:
                raise
        else:
            audit.append(
                session,
                SYSTEM_ACTOR,
                "incident.opened",
                f"incident/{incident.id}",
                {"site": site.name, "kind": kind.value, "title": incident.title, **details},
                at=now,
            )
            escalate(session, paging, incident, now)
            return incident, True
    existing.trigger_count += 1
    existing.last_triggered_at = now
    existing.details = {**existing.details, "latest": details}
    return existing, False


def _tier_due(paging: PagingSettings, tier: int, opened_at: datetime) -> datetime:
    return opened_at + timedelta(minutes=paging.tiers[tier].after_minutes)


def escalate(session: Session, paging: PagingSettings, incident: Incident, now: datetime) -> int:
    """Page every tier now due and not yet paged; returns how many pages were written.

    The tier is claimed with a conditional update, so two processes never page it twice.
    """
    written = 0
    while (
        incident.next_tier_at is not None
        and incident.next_tier_at <= now
        and incident.acknowledged_at is None
        and incident.resolved_at is None
    ):
        tier = incident.tier + 1
        following = (
            _tier_due(paging, tier + 1, incident.opened_at)
            if tier + 1 < len(paging.tiers)
            else None
        )
        claimed = session.execute(
            update(Incident)
            .where(Incident.id == incident.id, Incident.tier == incident.tier)
            .values(tier=tier, next_tier_at=following)
            .execution_options(synchronize_session=False)
        )
        session.refresh(incident)
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue  # another process paged it; look again at what is due now
        for channel in paging.tiers[tier].channels:
            session.add(_page(incident, tier, channel, PageEvent.TRIGGER, now))
            written += 1
        audit.append(
            session,
            SYSTEM_ACTOR,
            "incident.paged",
            f"incident/{incident.id}",
            {"tier": tier + 1, "channels": paging.tiers[tier].channels},
            at=now,
        )
    return written


def work_due(session: Session, paging: PagingSettings, now: datetime) -> bool:
    """Whether an incident needs its next tier paged, or is quiet enough to close: a read-only
    look, so the watch takes the write lock only when there is work."""
    quiet_since = now - timedelta(minutes=paging.resolve_after_minutes)
    due = select(Incident.id).where(
        Incident.resolved_at.is_(None),
        (
            (Incident.next_tier_at.is_not(None))
            & (Incident.next_tier_at <= now)
            & (Incident.acknowledged_at.is_(None))
        )
        | ((Incident.acknowledged_at.is_not(None)) & (Incident.last_triggered_at < quiet_since)),
    )
    return session.scalar(due.limit(1)) is not None


def escalate_due(session: Session, paging: PagingSettings, now: datetime) -> int:
    """Page the next tier of every incident nobody acknowledged in time."""
    due = session.scalars(
        select(Incident).where(
            Incident.next_tier_at.is_not(None),
            Incident.next_tier_at <= now,
            Incident.acknowledged_at.is_(None),
            Incident.resolved_at.is_(None),
        )
    ).all()
    return sum(escalate(session, paging, incident, now) for incident in due)


def acknowledge(
    session: Session, paging: PagingSettings, incident: Incident, actor: str, now: datetime
) -> bool:
    """Someone is on it: escalation stops. Returns False if it was already acknowledged."""
    if incident.acknowledged_at is not None or incident.resolved_at is not None:
        return False
    incident.acknowledged_at = now
    incident.acknowledged_by = actor[:200]
    incident.next_tier_at = None
    audit.append(session, actor, "incident.acknowledged", f"incident/{incident.id}", {}, at=now)
    _follow_up(session, paging, incident, PageEvent.ACKNOWLEDGE, now)
    return True


def resolve(
    session: Session,
    paging: PagingSettings,
    incident: Incident,
    actor: str,
    now: datetime,
    *,
    why: str,
) -> bool:
    """Close the incident: a new trigger opens (and pages) a new one."""
    if incident.resolved_at is not None:
        return False
    incident.resolved_at = now
    incident.resolved_by = actor[:200]
    incident.open_key = None
    incident.next_tier_at = None
    audit.append(
        session, actor, "incident.resolved", f"incident/{incident.id}", {"why": why}, at=now
    )
    _follow_up(session, paging, incident, PageEvent.RESOLVE, now)
    return True


def _follow_up(
    session: Session, paging: PagingSettings, incident: Incident, event: PageEvent, now: datetime
) -> None:
    """Channels that keep an incident's state (PagerDuty) hear that it changed."""
    paged = session.execute(
        select(Page.channel, func.min(Page.tier))
        .where(Page.incident_id == incident.id, Page.event == PageEvent.TRIGGER.value)
        .group_by(Page.channel)
    ).all()
    kinds = {channel.name: channel.kind for channel in paging.channels}
    for channel, tier in paged:
        if kinds.get(channel) == "pagerduty":
            session.add(_page(incident, tier, channel, event, now))


def _page(incident: Incident, tier: int, channel: str, event: PageEvent, now: datetime) -> Page:
    return Page(
        incident_id=incident.id,
        tier=tier,
        channel=channel,
        event=event.value,
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )


def resolve_quiet(session: Session, paging: PagingSettings, now: datetime) -> int:
    """Close acknowledged incidents nothing has triggered for a while."""
    quiet_since = now - timedelta(minutes=paging.resolve_after_minutes)
    quiet = session.scalars(
        select(Incident).where(
            Incident.resolved_at.is_(None),
            Incident.acknowledged_at.is_not(None),
            Incident.last_triggered_at < quiet_since,
        )
    ).all()
    for incident in quiet:
        resolve(session, paging, incident, SYSTEM_ACTOR, now, why="quiet since acknowledged")
    return len(quiet)


def _overdue_urgent(
    session: Session, paging: PagingSettings, site_id: int, now: datetime
) -> tuple[int, datetime | None]:
    overdue_since = now - timedelta(minutes=paging.urgent_unreviewed_minutes)
    count, oldest = session.execute(
        select(func.count(), func.min(Submission.created_at)).where(
            Submission.site_id == site_id,
            Submission.review_state == "pending",
            Submission.priority == Priority.URGENT.rank,
            Submission.created_at <= overdue_since,
        )
    ).one()
    return int(count), oldest


def urgent_queue_changed(
    session: Session, paging: PagingSettings, site_id: int, now: datetime
) -> bool:
    """Whether :func:`watch_urgent_queue` has something to open, update or close (read-only)."""
    count, _ = _overdue_urgent(session, paging, site_id, now)
    incident = find_open(session, open_key(site_id, IncidentKind.URGENT_UNREVIEWED))
    if incident is None:
        return count > 0
    known = incident.details.get("latest", incident.details)
    return count == 0 or known.get("overdue") != count


def watch_urgent_queue(session: Session, paging: PagingSettings, site: Site, now: datetime) -> None:
    """Page when a possible-minor item has waited too long; close the incident once none has."""
    count, oldest = _overdue_urgent(session, paging, site.id, now)
    key = open_key(site.id, IncidentKind.URGENT_UNREVIEWED)
    if count:
        incident = find_open(session, key)
        known = incident.details.get("latest", incident.details) if incident else {}
        if incident is None or known.get("overdue") != count:
            raise_incident(
                session,
                paging,
                site,
                IncidentKind.URGENT_UNREVIEWED,
                f"{site.name}: {count} urgent item(s) unreviewed for over "
                f"{paging.urgent_unreviewed_minutes:g} minutes",
                {"overdue": count, "oldest": oldest.isoformat() if oldest else None},
                now,
            )
        return
    incident = find_open(session, key)
    if incident is not None:
        resolve(session, paging, incident, SYSTEM_ACTOR, now, why="no urgent item is overdue")


def resolve_kind(
    session: Session,
    paging: PagingSettings,
    site_id: int,
    kind: IncidentKind,
    scope: str,
    now: datetime,
    *,
    why: str,
) -> None:
    incident = find_open(session, open_key(site_id, kind, scope))
    if incident is not None:
        resolve(session, paging, incident, SYSTEM_ACTOR, now, why=why)


def open_incidents(session: Session, site_id: int | None = None) -> list[Incident]:
    query = select(Incident).where(Incident.resolved_at.is_(None)).order_by(Incident.opened_at)
    if site_id is not None:
        query = query.where(Incident.site_id == site_id)
    return list(session.scalars(query).all())


def find_by_token(session: Session, incident_id: int, token: str) -> Incident | None:
    """The incident whose acknowledgement link carries this token; None for any other token."""
    incident = session.get(Incident, incident_id)
    if incident is None or not secrets.compare_digest(
        incident.ack_token.encode(), token.encode("utf-8", "replace")
    ):
        return None
    return incident


def incident_state(incident: Incident) -> Literal["open", "acknowledged", "resolved"]:
    if incident.resolved_at is not None:
        return "resolved"
    return "acknowledged" if incident.acknowledged_at is not None else "open"


def already_settled(incident: Incident) -> Conflict:
    """The error for acknowledging (or resolving) an incident someone already did."""
    who = incident.resolved_by or incident.acknowledged_by
    return Conflict(f"incident {incident.id} is already {incident_state(incident)} (by {who})")
