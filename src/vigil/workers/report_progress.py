"""The report row's side of an NCMEC send: the lease, each step's progress, and the outcome.

An attempt holds the report by a lease, and the lease's end is its token: every write of
progress or outcome names it, and extends it. A lease can run out mid-send (a slow answer, a
wait for a lock) and another worker take the report over; the first attempt's next write then
changes nothing (:class:`LeaseLost`), and it stops there without calling NCMEC again.

Writes that also touch evidence items take the report and item rows first and the custody head
last, the order holds, purges and key rotation take them in.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from vigil.clock import Clock
from vigil.config import Settings
from vigil.evidence import custody
from vigil.evidence.custody import CustodyAction
from vigil.evidence.reports import Authority, ReportStatus, report_items
from vigil.store import audit, leases
from vigil.store.database import Database
from vigil.store.models import AuthorityReport, AuthorityReportItem, EvidenceItem
from vigil.workers.retry import next_attempt_at

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "vigil"
_LEASE_SLACK_SECONDS = 60.0
# 18 U.S.C. 2258A(h) as amended by the REPORT Act: what was reported is preserved for a year
# after the report, whatever the retention setting says.
PRESERVE_AFTER_REPORT_DAYS = 365


@dataclass
class SendJob:
    """One attempt at one report: what it sends, and how far earlier attempts got."""

    report_id: int
    lease_until: datetime  # the token: this attempt's writes count while the row still has it
    attempts_before: int
    payload: str
    environment: str | None
    progress: dict[str, Any]
    items: list[EvidenceItem]


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt did: ``status`` is sent, pending (to be retried) or failed."""

    report_id: int
    status: str
    ncmec_report_id: str | None
    error: str | None


class LeaseLost(Exception):
    """The lease ran out and another attempt took the report over: this one must stop."""


class ReportProgress:
    """Claims a report row for an attempt and records, under its lease, what the attempt did."""

    def __init__(self, database: Database, settings: Settings, clock: Clock) -> None:
        self._database = database
        self._settings = settings
        self._ncmec = settings.evidence.ncmec
        self._clock = clock

    def claim(self, report_id: int, now: datetime) -> SendJob | None:
        """The report leased to a new attempt, or None if it is not this worker's to send."""
        with self._database.write_session() as session:
            report = leases.claim(session, AuthorityReport, report_id, now, self._lease(1))
            if report is None:
                return None
            if report.authority != Authority.NCMEC:
                leases.record_failure(
                    session, AuthorityReport, report.id, "Vigil sends only NCMEC reports", None
                )
                return None
            items = report_items(session, report.id)
            # Long enough for every call this attempt may make, each bounded by the timeout.
            lease_until = now + self._lease(len(items))
            session.execute(
                update(AuthorityReport)
                .where(AuthorityReport.id == report.id)
                .values(lease_until=lease_until)
            )
            return SendJob(
                report.id,
                lease_until,
                report.attempts,
                report.payload,
                report.environment,
                copy.deepcopy(report.progress or {}),
                items,
            )

    def _lease(self, files: int) -> timedelta:
        calls = 2 * files + 3  # retract, submit, upload and fileinfo per file, finish
        return timedelta(seconds=calls * self._ncmec.timeout_seconds + _LEASE_SLACK_SECONDS)

    def changed(self, job: SendJob) -> None:
        """A checkpoint after a change to the NCMEC report, which restarts its expiry clock."""
        job.progress["last_change_at"] = self._clock.now().isoformat()
        self.checkpoint(job)

    def checkpoint(self, job: SendJob) -> None:
        """Where the send got to, committed now: the next attempt starts from here."""
        with self._database.write_session() as session:
            lease_until = self.renew(session, job, progress=copy.deepcopy(job.progress))
        job.lease_until = lease_until  # only once committed: a rollback leaves the old token

    def renew(self, session: Session, job: SendJob, **values: Any) -> datetime:
        """Writes ``values`` and a longer lease, if this attempt still holds the report.

        Returns the new token; the caller adopts it once ``session`` has committed.
        """
        lease_until = self._clock.now() + self._lease(len(job.items))
        self._write(session, job, lease_until=lease_until, **values)
        return lease_until

    def _write(self, session: Session, job: SendJob, **values: Any) -> None:
        """Updates the report row if the lease is still this attempt's; else stops it."""
        written = session.execute(
            update(AuthorityReport)
            .where(AuthorityReport.id == job.report_id)
            .where(AuthorityReport.lease_until == job.lease_until)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if written.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost("the lease ran out and another attempt took the report over")

    def settle(self, job: SendJob, ncmec_id: str) -> None:
        """Marks the report sent, keeps its items, and records that in custody.

        Rows first, custody head last (as holds, purges and key rotation take them): taking the
        head between two item rows could deadlock with a hold on PostgreSQL.
        """
        now = self._clock.now()
        files = job.progress.get("files", {})
        keep_until = now + timedelta(
            days=max(self._settings.evidence.retention_days, PRESERVE_AFTER_REPORT_DAYS)
        )
        with self._database.write_session() as session:
            self._write(
                session,
                job,
                status=ReportStatus.SENT.value,
                external_id=ncmec_id,
                sent_at=now,
                attempts=AuthorityReport.attempts + 1,
                lease_until=None,
                last_error=None,
                progress=copy.deepcopy(job.progress),
            )
            session.execute(
                update(EvidenceItem)
                .where(
                    EvidenceItem.id.in_(sorted(item.id for item in job.items)),
                    EvidenceItem.retain_until < keep_until,
                )
                .values(retain_until=keep_until)
                .execution_options(synchronize_session=False)
            )
            for item in job.items:
                session.execute(
                    update(AuthorityReportItem)
                    .where(
                        AuthorityReportItem.report_id == job.report_id,
                        AuthorityReportItem.item_id == item.id,
                    )
                    .values(external_file_id=files.get(item.id, {}).get("file_id"))
                )
            for item in job.items:
                custody.append(
                    session,
                    item.id,
                    CustodyAction.REPORTED,
                    SYSTEM_ACTOR,
                    {
                        "report": job.report_id,
                        "authority": Authority.NCMEC.value,
                        "status": ReportStatus.SENT.value,
                        "ncmec_report_id": ncmec_id,
                        "ncmec_file_id": files.get(item.id, {}).get("file_id"),
                        "environment": job.environment,
                    },
                    now,
                )
            audit.append(
                session,
                SYSTEM_ACTOR,
                "report.ncmec.sent",
                str(job.report_id),
                {
                    "ncmec_report_id": ncmec_id,
                    "environment": job.environment,
                    "items": [item.id for item in job.items],
                },
                at=now,
            )
        log.info("NCMEC report %d filed as CyberTipline report %s", job.report_id, ncmec_id)

    def fail(self, job: SendJob, error: str, *, retryable: bool) -> SendOutcome:
        """Records a failed attempt: retried later with backoff, or failed for good."""
        now = self._clock.now()
        attempts = job.attempts_before + 1
        ncmec = self._ncmec
        retry_at = (
            next_attempt_at(
                attempts, ncmec.max_attempts, ncmec.retry_base_seconds, ncmec.retry_max_seconds, now
            )
            if retryable
            else None
        )
        with self._database.write_session() as session:
            held = leases.record_failure(
                session, AuthorityReport, job.report_id, error, retry_at, held_until=job.lease_until
            )
            if not held:
                return self.lost(job, error)
            if retry_at is None:
                audit.append(
                    session,
                    SYSTEM_ACTOR,
                    "report.ncmec.failed",
                    str(job.report_id),
                    {"error": error, "attempts": attempts},
                    at=now,
                )
        status = ReportStatus.PENDING if retry_at else ReportStatus.FAILED
        log.warning(
            "NCMEC report %d attempt %d: %s (%s)", job.report_id, attempts, error, status.value
        )
        return SendOutcome(job.report_id, status.value, job.progress.get("report_id"), error)

    def lost(self, job: SendJob, why: str) -> SendOutcome:
        """The attempt that took the report over decides it; this one records nothing."""
        log.warning("NCMEC report %d: stopped, another attempt has it (%s)", job.report_id, why)
        error = f"stopped: another attempt took the report over ({why})"
        return SendOutcome(job.report_id, ReportStatus.PENDING.value, None, error)
