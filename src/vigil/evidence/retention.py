"""Retention: items are kept until ``retain_until``, longer while a legal hold names them or a
pending report still has to send them, and then purged by a job that records what it removed.

Purging is crypto-shredding: the item's wrapped key is erased in the same transaction that marks
the item purged, so from that commit on no copy of the sealed file (a backup of the vault folder,
a file a crashed purge left behind) can be opened, once database backups from before the purge
have expired too. The file itself is deleted only after that commit. The other order could
leave a row pointing at a file that is gone, unmarked, which ``vigil evidence verify`` would
rightly call a missing image; this order can at worst leave an unreadable file behind, which
verify lists as an orphan that is safe to delete.

Holds and purges lock the item rows they touch, so a hold placed while the purge runs either
waits for the purge (and finds the item purged) or keeps the item (the purge waits, then sees it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, event, func, select
from sqlalchemy.orm import Session

from vigil.clock import Clock
from vigil.config import Settings
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.evidence import custody
from vigil.evidence.custody import CustodyAction
from vigil.evidence.reports import ReportStatus
from vigil.evidence.vault import Vault
from vigil.store import audit
from vigil.store.database import Database
from vigil.store.models import (
    AuthorityReport,
    AuthorityReportItem,
    EvidenceItem,
    LegalHold,
    LegalHoldItem,
)

log = logging.getLogger(__name__)

MAX_CASE_NAME = 200
MAX_HOLD_ITEMS = 10_000
SYSTEM_ACTOR = "vigil"


@dataclass
class PurgeResult:
    """What one purge removed, and the expired items a legal hold kept."""

    purged: list[str] = field(default_factory=list)
    kept_on_hold: list[str] = field(default_factory=list)
    # Expired, but a report that still has to send them covers them (NCMEC down for a long while).
    kept_for_report: list[str] = field(default_factory=list)


def _awaiting_report() -> Select[str]:
    """Items a report still has to send: purging them would leave the report without its files."""
    return (
        select(AuthorityReportItem.item_id)
        .join(AuthorityReport, AuthorityReport.id == AuthorityReportItem.report_id)
        .where(AuthorityReport.status == ReportStatus.PENDING.value)
    )


def _expired_ids(session: Session, now: datetime, kept: Select[str], limit: int) -> list[str]:
    return list(
        session.scalars(
            select(EvidenceItem.id)
            .where(EvidenceItem.retain_until <= now, EvidenceItem.purged_at.is_(None))
            .where(EvidenceItem.id.in_(kept))
            .order_by(EvidenceItem.retain_until, EvidenceItem.id)
            .limit(limit)
        )
    )


def _active_hold_items() -> Select[str]:
    return (
        select(LegalHoldItem.item_id)
        .join(LegalHold, LegalHold.id == LegalHoldItem.hold_id)
        .where(LegalHold.released_at.is_(None))
    )


def place_hold(
    session: Session,
    *,
    site_id: int,
    case_name: str,
    reason: str,
    item_ids: Sequence[str],
    actor: str,
    now: datetime,
) -> LegalHold:
    """Keep ``item_ids`` beyond their retention until the hold is released."""
    case_name = case_name.strip()
    reason = reason.strip()
    if not 1 <= len(case_name) <= MAX_CASE_NAME:
        raise InvalidRequest(f"a case name has 1 to {MAX_CASE_NAME} characters")
    if not reason:
        raise InvalidRequest("say why the items must be kept (a reason)")
    wanted = list(dict.fromkeys(item_ids))  # once each, in the order given
    if not wanted:
        raise InvalidRequest("a hold names at least one item")
    if len(wanted) > MAX_HOLD_ITEMS:
        raise InvalidRequest(f"a hold names at most {MAX_HOLD_ITEMS} items")
    # Locked (and re-read) so a purge running now either finished first or waits for this hold.
    items = {
        item.id: item
        for item in session.scalars(
            select(EvidenceItem)
            .where(EvidenceItem.id.in_(wanted))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    missing = [item_id for item_id in wanted if item_id not in items]
    if missing:
        raise NotFound(f"no evidence item {', '.join(missing)}")
    elsewhere = [item_id for item_id in wanted if items[item_id].site_id != site_id]
    if elsewhere:
        raise InvalidRequest(f"items from another site: {', '.join(elsewhere)}")
    purged = [item_id for item_id in wanted if items[item_id].purged_at is not None]
    if purged:
        raise Conflict(f"already purged, nothing left to keep: {', '.join(purged)}")
    hold = LegalHold(
        site_id=site_id, case_name=case_name, reason=reason, placed_by=actor, placed_at=now
    )
    session.add(hold)
    session.flush()
    for item_id in wanted:
        session.add(LegalHoldItem(hold_id=hold.id, item_id=item_id))
        custody.append(
            session,
            item_id,
            CustodyAction.HOLD_PLACED,
            actor,
            {"hold": hold.id, "case": case_name, "reason": reason},
            now,
        )
    audit.append(
        session,
        actor,
        "evidence.hold_placed",
        f"hold/{hold.id}",
        {"case": case_name, "reason": reason, "items": wanted},
        at=now,
    )
    session.flush()
    return hold


def release_hold(
    session: Session, hold_id: int, *, reason: str, actor: str, now: datetime
) -> LegalHold:
    """End a hold: its items are purged when their retention has run out and no other hold
    keeps them."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("say why the hold ends (a reason)")
    hold = session.scalar(
        select(LegalHold)
        .where(LegalHold.id == hold_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if hold is None:
        raise NotFound(f"no legal hold {hold_id}")
    if hold.released_at is not None:
        raise Conflict(
            f"legal hold {hold_id} was already released by {hold.released_by} "
            f"on {hold.released_at:%Y-%m-%d %H:%M} UTC"
        )
    hold.released_at = now
    hold.released_by = actor
    hold.release_reason = reason
    item_ids = [item.id for item in hold_items(session, hold_id)]
    for item_id in item_ids:
        custody.append(
            session,
            item_id,
            CustodyAction.HOLD_RELEASED,
            actor,
            {"hold": hold.id, "case": hold.case_name, "reason": reason},
            now,
        )
    audit.append(
        session,
        actor,
        "evidence.hold_released",
        f"hold/{hold.id}",
        {"case": hold.case_name, "reason": reason, "items": item_ids},
        at=now,
    )
    session.flush()
    return hold


def uploader_item_ids(session: Session, site_id: int, uploader_id: str) -> list[str]:
    """The ids of one uploader's unpurged items on a site, oldest first (what a hold can keep)."""
    return list(
        session.scalars(
            select(EvidenceItem.id)
            .where(
                EvidenceItem.site_id == site_id,
                EvidenceItem.uploader_id == uploader_id,
                EvidenceItem.purged_at.is_(None),
            )
            .order_by(EvidenceItem.received_at, EvidenceItem.id)
        )
    )


def active_holds(session: Session, site_id: int | None = None) -> Sequence[LegalHold]:
    query = select(LegalHold).where(LegalHold.released_at.is_(None)).order_by(LegalHold.id)
    if site_id is not None:
        query = query.where(LegalHold.site_id == site_id)
    return session.scalars(query).all()


def hold_items(session: Session, hold_id: int) -> list[EvidenceItem]:
    return list(
        session.scalars(
            select(EvidenceItem)
            .join(LegalHoldItem, LegalHoldItem.item_id == EvidenceItem.id)
            .where(LegalHoldItem.hold_id == hold_id)
            .order_by(EvidenceItem.received_at, EvidenceItem.id)
        )
    )


def held_item_ids(session: Session, item_ids: Iterable[str]) -> set[str]:
    """Which of ``item_ids`` an unreleased hold keeps."""
    wanted = list(item_ids)
    held: set[str] = set()
    for start in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[start : start + 500]
        held.update(
            session.scalars(_active_hold_items().where(LegalHoldItem.item_id.in_(chunk)).distinct())
        )
    return held


def purge_expired(
    session: Session,
    vault: Vault,
    *,
    now: datetime,
    actor: str,
    dry_run: bool = False,
    limit: int = 500,
) -> PurgeResult:
    """Purge up to ``limit`` items whose retention ran out, that no hold keeps and that no
    pending report still has to send.

    The rows change in the caller's transaction; the files are deleted once it commits (nothing
    is deleted if it rolls back). ``dry_run`` says what would go and changes nothing.
    """
    result = PurgeResult(
        kept_on_hold=_expired_ids(session, now, _active_hold_items(), limit),
        kept_for_report=_expired_ids(session, now, _awaiting_report(), limit),
    )
    # Kept items are left out here, or a few hundred of them would fill every batch for ever.
    candidates = list(
        session.scalars(
            select(EvidenceItem)
            .where(EvidenceItem.retain_until <= now, EvidenceItem.purged_at.is_(None))
            .where(EvidenceItem.id.not_in(_active_hold_items()))
            .where(EvidenceItem.id.not_in(_awaiting_report()))
            .order_by(EvidenceItem.retain_until, EvidenceItem.id)
            .limit(limit)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    # Asked again now that the rows are locked: a hold committed while we waited for them counts.
    ids = [item.id for item in candidates]
    held_now = held_item_ids(session, ids)
    awaiting_now = set(
        session.scalars(_awaiting_report().where(AuthorityReportItem.item_id.in_(ids)))
    )
    result.kept_on_hold += sorted(held_now - set(result.kept_on_hold))
    result.kept_for_report += sorted(awaiting_now - set(result.kept_for_report))
    doomed = [item for item in candidates if item.id not in held_now | awaiting_now]
    result.purged = [item.id for item in doomed]
    if dry_run or not doomed:
        return result
    files = [item.file_path for item in doomed if item.file_path is not None]
    for item in doomed:
        details = {
            "retain_until": item.retain_until.isoformat(),
            "key_id": item.key_id,
            "file_deleted": item.file_path is not None,
        }
        item.key_id = None
        item.wrapped_key = None
        item.file_path = None
        item.capture = {}
        item.exif = {}
        item.purged_at = now
        custody.append(session, item.id, CustodyAction.PURGED, actor, details, now)
    audit.append(
        session,
        actor,
        "evidence.purged",
        None,
        {
            "items": result.purged,
            "kept_on_hold": result.kept_on_hold,
            "kept_for_report": result.kept_for_report,
        },
        at=now,
    )
    session.flush()
    _delete_after_commit(session, vault, files)
    return result


def _delete_after_commit(session: Session, vault: Vault, files: list[str]) -> None:
    """Delete ``files`` when the session commits; never if it rolls back first (the rows would
    still point at them)."""
    pending = list(files)

    def delete(_session: Session) -> None:
        while pending:
            relative = pending.pop()
            try:
                vault.files.delete(relative)
            except OSError as error:
                # Harmless: its key is gone. Verify lists it as an orphan to delete by hand.
                log.warning("a purged evidence file could not be deleted: %s: %s", relative, error)

    def forget(_session: Session, _transaction: object) -> None:
        pending.clear()

    event.listen(session, "after_commit", delete)
    event.listen(session, "after_soft_rollback", forget)


class PurgeJob:
    """For the embedded worker: purge expired, unheld items every
    ``evidence.purge_interval_minutes``, in batches of their own transactions."""

    def __init__(self, database: Database, vault: Vault, settings: Settings, clock: Clock) -> None:
        self._database = database
        self._vault = vault
        self._interval = timedelta(minutes=settings.evidence.purge_interval_minutes)
        self._clock = clock
        self._last_run: datetime | None = None
        self.batch = 500

    def run_if_due(self) -> int:
        """Purge if the interval has passed since the last run; returns how many items went."""
        now = self._clock.now()
        if self._last_run is not None and now - self._last_run < self._interval:
            return 0
        self._last_run = now
        return self.run(now)

    def run(self, now: datetime) -> int:
        # A look first, without the write lock: on SQLite it would make every writer wait.
        with self._database.session() as session:
            due = session.scalar(
                select(func.count())
                .select_from(EvidenceItem)
                .where(EvidenceItem.retain_until <= now, EvidenceItem.purged_at.is_(None))
            )
        if not due:
            return 0
        purged = 0
        while True:
            with self._database.write_session() as session:
                result = purge_expired(
                    session, self._vault, now=now, actor=SYSTEM_ACTOR, limit=self.batch
                )
            purged += len(result.purged)
            if len(result.purged) < self.batch:
                break
        if purged:
            log.info("purged %d evidence items whose retention ran out", purged)
        return purged
