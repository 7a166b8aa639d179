"""Queueing CyberTipline reports: whether Vigil may send them, and the pending report itself.

A queued report is a row in ``pending``: the XML is fixed when it is queued and kept as the
report's payload, and the worker (:mod:`vigil.workers.authority_reports`) sends it. Refusing
early, with the setting to add, spares a report that could never be sent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from vigil.config import NcmecSettings, Settings
from vigil.errors import EvidenceError
from vigil.evidence import reports
from vigil.evidence.ncmec import report_xml
from vigil.evidence.reports import Authority, ReportStatus
from vigil.store.models import AuthorityReport


class NcmecNotConfigured(EvidenceError):
    """CyberTipline reports are off, or a setting they need is missing."""

    code = "ncmec_not_configured"


def require_ready(settings: NcmecSettings, reporter_email: str) -> None:
    """Refuse, saying which setting to add, when reports cannot be sent."""
    if not settings.enabled:
        raise NcmecNotConfigured(
            "CyberTipline reports are off: set evidence.ncmec.enabled = true, with the "
            "username and password NCMEC issued"
        )
    if not settings.username:
        raise NcmecNotConfigured("evidence.ncmec.username is missing (NCMEC issues it)")
    if not settings.password and settings.password_file is None:
        raise NcmecNotConfigured(
            "the NCMEC password is missing: set VIGIL_EVIDENCE__NCMEC__PASSWORD or "
            "evidence.ncmec.password_file"
        )
    if not reporter_email.strip():
        raise NcmecNotConfigured(
            "evidence.reporter.email is missing: NCMEC requires the reporting person's email"
        )


def queue_ncmec_report(
    session: Session,
    settings: Settings,
    *,
    site_id: int,
    uploader_id: str | None,
    actor: str,
    now: datetime,
) -> AuthorityReport:
    """A pending CyberTipline report of everything of one uploader no NCMEC report covers yet;
    the worker sends it. The XML to send is fixed now and kept as the report's payload."""
    require_ready(settings.evidence.ncmec, settings.evidence.reporter.email)
    site, items = reports.items_to_report(session, Authority.NCMEC, site_id, uploader_id)
    return reports.create_report(
        session,
        authority=Authority.NCMEC,
        site_id=site_id,
        uploader_id=uploader_id,
        items=items,
        payload=report_xml(settings, site.name, uploader_id, items, now),
        status=ReportStatus.PENDING,
        actor=actor,
        now=now,
        environment=settings.evidence.ncmec.environment,
    )
