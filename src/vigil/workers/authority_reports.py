"""Send queued CyberTipline reports to NCMEC, resuming an interrupted send where it stopped.

A report goes out in steps: ``/submit`` opens it at NCMEC, each image is uploaded and described
(``/upload``, ``/fileinfo``), and ``/finish`` files it. NCMEC has no idempotency key: every
submit opens a new report. So after each step the row's ``progress`` is committed on its own,
and a later attempt carries on with the same NCMEC report instead of opening a second one.

Two cases start over instead, retracting the open report first: NCMEC deletes an unfinished
report an hour after its last change, and an upload whose outcome is unknown (no answer, the
file arrived altered, or the attempt making it stopped) may have left a file in the report that
must not stay there.

An attempt holds the report by a lease, and the lease's end is its token: every write of
progress or outcome names it, and extends it. A lease can run out mid-send (a slow answer, a
wait for a lock) and another worker take the report over; the first attempt's next write then
changes nothing, and it stops there without calling NCMEC again. Those writes, and the outcome's,
are :mod:`vigil.workers.report_progress`; this module is the send sequence.
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime, timedelta
from typing import Any, NoReturn

from vigil.clock import Clock
from vigil.config import Settings
from vigil.errors import VigilError
from vigil.evidence import custody
from vigil.evidence.custody import CustodyAction
from vigil.evidence.cybertipline import (
    FILE_NOT_FOUND,
    REPORT_NOT_FOUND,
    CyberTipline,
    CyberTiplineError,
    Retracted,
    UploadAltered,
)
from vigil.evidence.ncmec import file_details_xml, media_type, original_file_name
from vigil.evidence.ncmec_queue import NcmecNotConfigured, require_ready
from vigil.evidence.reports import ReportStatus
from vigil.evidence.vault import Vault
from vigil.store import audit, leases
from vigil.store.database import Database
from vigil.store.models import AuthorityReport, EvidenceItem
from vigil.workers.report_progress import (
    SYSTEM_ACTOR,
    LeaseLost,
    ReportProgress,
    SendJob,
    SendOutcome,
)

__all__ = ["OPEN_REPORT_LIFETIME", "UPLOAD_PURPOSE", "CyberTiplineSender", "SendOutcome"]

log = logging.getLogger(__name__)

UPLOAD_PURPOSE = "ncmec upload"
# NCMEC deletes an unfinished report 1 h after its last change (or 24 h after it was opened,
# whichever is later); the margin keeps a resumed send clear of that edge.
OPEN_REPORT_LIFETIME = timedelta(hours=1)
_LIFETIME_MARGIN = timedelta(minutes=10)


class _Restart(CyberTiplineError):
    """The open NCMEC report cannot be completed: retract it and submit afresh next time."""


class CyberTiplineSender:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        vault: Vault,
        clock: Clock,
        *,
        client: CyberTipline | None = None,
    ) -> None:
        self._database = database
        self._settings = settings
        self._ncmec = settings.evidence.ncmec
        self._vault = vault
        self._clock = clock
        self._client = client or CyberTipline(self._ncmec)
        self._progress = ReportProgress(database, settings, clock)

    def close(self) -> None:
        self._client.close()

    def send_due(self, limit: int = 10) -> int:
        """Attempt every NCMEC report that is due; returns how many were attempted."""
        return len(self.send_due_reports(limit))

    def send_due_reports(self, limit: int = 10) -> list[SendOutcome]:
        now = self._clock.now()
        with self._database.session() as session:
            due = leases.due_ids(session, AuthorityReport, now, limit)
        outcomes = []
        for report_id in due:
            job = self._progress.claim(report_id, now)
            if job is not None:
                # No transaction is open while NCMEC is called: a slow answer blocks no one.
                outcomes.append(self._attempt(job))
        return outcomes

    def _attempt(self, job: SendJob) -> SendOutcome:
        try:
            ncmec_id = self._send(job)
            # Recorded before the bookkeeping: should that fail, no attempt calls NCMEC again.
            self._progress.checkpoint(job)
            self._progress.settle(job, ncmec_id)
        except LeaseLost as lost:
            return self._progress.lost(job, str(lost))
        except CyberTiplineError as error:
            return self._progress.fail(job, error.message, retryable=error.retryable)
        except VigilError as error:  # settings, or evidence failing its integrity check
            return self._progress.fail(job, error.message, retryable=False)
        except Exception as error:  # a bug must not leave the report leased and silent
            log.exception("NCMEC report %d: the send failed unexpectedly", job.report_id)
            return self._progress.fail(job, f"{type(error).__name__}: {error}", retryable=True)
        return SendOutcome(job.report_id, ReportStatus.SENT.value, ncmec_id, None)

    # --- the sequence ---------------------------------------------------------------------------

    def _send(self, job: SendJob) -> str:
        """Runs (or resumes) the sequence; NCMEC's id for the filed report."""
        require_ready(self._ncmec, self._settings.evidence.reporter.email)
        if job.environment is not None and job.environment != self._ncmec.environment:
            raise NcmecNotConfigured(
                f"queued for NCMEC's {job.environment} environment, but Vigil now reports to "
                f"{self._ncmec.environment}: queue the report again"
            )
        progress = job.progress
        ncmec_id: str | None = progress.get("report_id")
        if ncmec_id and not progress.get("finished") and self._must_start_over(progress):
            if self._client.retract(ncmec_id) is Retracted.FINISHED:
                progress["finished"] = True  # an earlier attempt filed it after all
                return ncmec_id
            abandoned = [*progress.get("abandoned", []), self._abandoned(progress)]
            job.progress = progress = {"abandoned": abandoned}
            self._progress.checkpoint(job)
            ncmec_id = None
        if ncmec_id is None:
            ncmec_id = self._client.submit(job.payload)
            now = self._clock.now().isoformat()
            progress.update(report_id=ncmec_id, opened_at=now, last_change_at=now, files={})
            self._progress.checkpoint(job)
        if progress.get("finished"):
            return ncmec_id
        try:
            for item in job.items:
                self._send_file(job, ncmec_id, item)
            finished = self._client.finish(ncmec_id)
        except CyberTiplineError as error:
            if error.code in (REPORT_NOT_FOUND, FILE_NOT_FOUND):
                # It expired (or was withdrawn) while Vigil waited to try again.
                self._start_over(job, f"NCMEC no longer has report {ncmec_id}: {error.message}")
            raise
        progress["finished"] = True
        progress["files_filed"] = finished.file_ids
        ours = {entry["file_id"] for entry in progress["files"].values()}
        if not finished.already and set(finished.file_ids) != ours:
            log.warning(
                "NCMEC report %s was filed with files %s; Vigil uploaded %s",
                ncmec_id,
                sorted(finished.file_ids),
                sorted(ours),
            )
        return ncmec_id

    def _send_file(self, job: SendJob, ncmec_id: str, item: EvidenceItem) -> None:
        files: dict[str, dict[str, Any]] = job.progress["files"]
        entry = files.get(item.id)
        if entry is None:
            data = self._decrypt(job, ncmec_id, item)
            try:
                uploaded = self._client.upload(
                    ncmec_id, original_file_name(item), data, media_type(item)
                )
            except CyberTiplineError as error:
                if isinstance(error, UploadAltered) or error.ambiguous:
                    # The report may now hold a damaged or a second copy of this file.
                    self._start_over(job, f"upload of item {item.id}: {error.message}")
                del job.progress["uploading"]  # NCMEC said no: nothing of it is in the report
                self._progress.checkpoint(job)
                raise
            del job.progress["uploading"]
            entry = files[item.id] = {"file_id": uploaded.file_id, "md5": uploaded.md5}
            self._progress.changed(job)
        if not entry.get("fileinfo_sent"):
            details = file_details_xml(ncmec_id, entry["file_id"], item)
            self._client.file_info(details)
            entry.update(fileinfo_sent=True, file_details=details)
            self._progress.changed(job)

    def _must_start_over(self, progress: dict[str, Any]) -> bool:
        if progress.get("restart") or progress.get("uploading"):
            return True
        last_change = datetime.fromisoformat(progress["last_change_at"])
        return self._clock.now() - last_change > OPEN_REPORT_LIFETIME - _LIFETIME_MARGIN

    def _abandoned(self, progress: dict[str, Any]) -> dict[str, Any]:
        why = progress.get("restart") or "open too long: NCMEC deletes unfinished reports"
        if progress.get("uploading") and not progress.get("restart"):
            # The attempt uploading it stopped (crashed, or lost its lease) before the answer.
            why = f"upload of item {progress['uploading']}: the outcome is unknown"
        return {
            "report_id": progress["report_id"],
            "opened_at": progress.get("opened_at"),
            "retracted_at": self._clock.now().isoformat(),
            "why": why,
        }

    def _start_over(self, job: SendJob, why: str) -> NoReturn:
        job.progress["restart"] = why
        self._progress.checkpoint(job)
        raise _Restart(None, f"{why}; the next attempt starts a new report", retryable=True)

    def _decrypt(self, job: SendJob, ncmec_id: str, item: EvidenceItem) -> bytes:
        """The image in the clear, for upload, with its custody entry written first.

        The same transaction notes the upload as begun: an attempt that finds it so, with no
        outcome recorded, cannot know whether the file is in the report, and starts over.
        """
        data = self._vault.open_image(item)
        now = self._clock.now()
        details = {
            "purpose": UPLOAD_PURPOSE,
            "decrypted": True,
            "report": job.report_id,
            "ncmec_report_id": ncmec_id,
        }
        job.progress["uploading"] = item.id
        with self._database.write_session() as session:
            # The report row before the custody head, the order ReportProgress.settle takes them in.
            lease_until = self._progress.renew(session, job, progress=copy.deepcopy(job.progress))
            custody.append(session, item.id, CustodyAction.EXPORTED, SYSTEM_ACTOR, details, now)
            audit.append(session, SYSTEM_ACTOR, "evidence.exported", item.id, details, at=now)
        job.lease_until = lease_until
        return data
