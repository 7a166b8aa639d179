"""Reports to the authorities, one per uploader: which items still need one, and the report rows.

A report covers every item of one uploader on one site that no earlier report to the same
authority covered (NCMEC asks for one report per incident and person, not one per image).

Making a report locks the item rows it covers, as holds and purges do: two people reporting the
same uploader at once make one report, and a purge either finished first (the report refuses the
purged items) or waits until the report is recorded (and then keeps what a pending report needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from vigil.errors import Conflict, NotFound
from vigil.evidence import custody
from vigil.evidence.custody import CustodyAction
from vigil.store import audit
from vigil.store.models import AuthorityReport, AuthorityReportItem, EvidenceItem, Site


class Authority(StrEnum):
    NCMEC = "ncmec"  # the US CyberTipline, sent by Vigil through NCMEC's API
    NCA = "nca"  # the UK National Crime Agency: a package a person submits
    POLICE = "police"  # a bundle for an investigating force (vigil evidence export)


class ReportStatus(StrEnum):
    PENDING = "pending"  # to be sent (retried until sent or failed)
    SENT = "sent"
    FAILED = "failed"  # gave up: a person must look (and may queue it again)
    PREPARED = "prepared"  # a package written for a person to submit


# A report in one of these states covers its items: they are no longer pending for that authority.
COVERING = (ReportStatus.PENDING, ReportStatus.SENT, ReportStatus.PREPARED)
# How a refusal names the authority.
_ADDRESSEES = {Authority.NCMEC: "NCMEC", Authority.NCA: "the NCA", Authority.POLICE: "the police"}


class NothingToReport(Conflict):
    """No item of the uploader awaits a report to the authority."""

    code = "nothing_to_report"


@dataclass(frozen=True)
class PendingUploader:
    """An uploader with items no report to an authority covers yet."""

    site_id: int
    uploader_id: str | None
    items: Sequence[EvidenceItem]

    @property
    def first_received(self) -> datetime:
        return min(item.received_at for item in self.items)


def _pending(authority: Authority) -> Select[Any]:
    """Unpurged items no report to ``authority`` covers, oldest first."""
    covered = (
        select(AuthorityReportItem.item_id)
        .join(AuthorityReport, AuthorityReport.id == AuthorityReportItem.report_id)
        .where(
            AuthorityReport.authority == authority.value,
            AuthorityReport.status.in_([status.value for status in COVERING]),
        )
    )
    return (
        select(EvidenceItem)
        .where(EvidenceItem.purged_at.is_(None), EvidenceItem.id.not_in(covered))
        .order_by(EvidenceItem.received_at, EvidenceItem.id)
    )


def pending_by_uploader(
    session: Session, authority: Authority, site_id: int | None = None
) -> list[PendingUploader]:
    """Unpurged items not yet covered by a report to ``authority``, grouped per uploader,
    oldest first."""
    query = _pending(authority)
    if site_id is not None:
        query = query.where(EvidenceItem.site_id == site_id)
    groups: dict[tuple[int, str | None], list[EvidenceItem]] = {}
    for item in session.scalars(query):
        groups.setdefault((item.site_id, item.uploader_id), []).append(item)
    return [PendingUploader(site, uploader, items) for (site, uploader), items in groups.items()]


def pending_for(
    session: Session, authority: Authority, site_id: int, uploader_id: str | None
) -> list[EvidenceItem]:
    """One uploader's items still needing a report to ``authority``."""
    query = _pending(authority).where(
        EvidenceItem.site_id == site_id,
        EvidenceItem.uploader_id.is_not_distinct_from(uploader_id),
    )
    return list(session.scalars(query))


def items_to_report(
    session: Session, authority: Authority, site_id: int, uploader_id: str | None
) -> tuple[Site, list[EvidenceItem]]:
    """The site, and one uploader's items a new report to ``authority`` would cover, locked.

    Refuses (:class:`NothingToReport`) when no item awaits a report.
    """
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound(f"no site with id {site_id}")
    items = pending_for(session, authority, site_id, uploader_id)
    if items:
        # Lock the rows and look again: two people reporting at once must not make two reports.
        _lock_items(session, [item.id for item in items])
        items = pending_for(session, authority, site_id, uploader_id)
    if not items:
        who = f"uploader {uploader_id!r}" if uploader_id is not None else "uploads with no uploader"
        raise NothingToReport(
            f"nothing to report to {_ADDRESSEES[authority]} for {who} on {site.name}"
        )
    return site, items


def _lock_items(session: Session, item_ids: Sequence[str]) -> dict[str, EvidenceItem]:
    """The rows of ``item_ids``, locked until the transaction ends and read afresh."""
    return {
        item.id: item
        for item in session.scalars(
            select(EvidenceItem)
            .where(EvidenceItem.id.in_(item_ids))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }


def create_report(
    session: Session,
    *,
    authority: Authority,
    site_id: int,
    uploader_id: str | None,
    items: Sequence[EvidenceItem],
    payload: str,
    status: ReportStatus,
    actor: str,
    now: datetime,
    environment: str | None = None,
) -> AuthorityReport:
    """The report row, its items, a custody entry per item and an audit entry.

    The items' rows are locked first; an item purged meanwhile is refused (:class:`Conflict`):
    a report must never cover an image that is gone.
    """
    wanted = [item.id for item in items]
    locked = _lock_items(session, wanted)
    missing = [item_id for item_id in wanted if item_id not in locked]
    if missing:
        raise NotFound(f"no evidence item {', '.join(missing)}")
    purged = [item_id for item_id in wanted if locked[item_id].purged_at is not None]
    if purged:
        raise Conflict(f"item {', '.join(purged)} was purged: no report can cover it")
    report = AuthorityReport(
        site_id=site_id,
        uploader_id=uploader_id,
        authority=authority.value,
        status=status.value,
        environment=environment,
        payload=payload,
        progress={},
        created_by=actor,
        created_at=now,
        attempts=0,
        next_attempt_at=now,
    )
    session.add(report)
    session.flush()
    for item in items:
        session.add(AuthorityReportItem(report_id=report.id, item_id=item.id))
        custody.append(
            session,
            item.id,
            CustodyAction.REPORTED,
            actor,
            {"report": report.id, "authority": authority.value, "status": status.value},
            now,
        )
    audit.append(
        session,
        actor,
        f"report.{authority.value}.{status.value}",
        str(report.id),
        {"uploader_id": uploader_id, "items": [item.id for item in items]},
        at=now,
    )
    session.flush()
    return report


def reports(
    session: Session, authority: Authority | None = None, *, limit: int = 200
) -> Sequence[AuthorityReport]:
    query = select(AuthorityReport).order_by(AuthorityReport.created_at.desc()).limit(limit)
    if authority is not None:
        query = query.where(AuthorityReport.authority == authority.value)
    return session.scalars(query).all()


def report_items(session: Session, report_id: int) -> list[EvidenceItem]:
    return list(
        session.scalars(
            select(EvidenceItem)
            .join(AuthorityReportItem, AuthorityReportItem.item_id == EvidenceItem.id)
            .where(AuthorityReportItem.report_id == report_id)
            .order_by(EvidenceItem.received_at, EvidenceItem.id)
        )
    )
