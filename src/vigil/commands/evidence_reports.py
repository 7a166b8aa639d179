"""``vigil evidence report ...`` and ``vigil evidence reports``: CyberTipline reports by hand.

Queueing writes a pending report; a running server's worker sends it at its next poll, and
``vigil evidence report send`` sends what is due from this process (no server needed).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import func, select

from vigil.clock import SystemClock
from vigil.commands.common import (
    ConfigFile,
    DataDir,
    EverySiteOption,
    actor,
    console,
    open_database,
)
from vigil.commands.evidence import evidence_app
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.evidence import reports
from vigil.evidence.ncmec_queue import queue_ncmec_report, require_ready
from vigil.evidence.reports import Authority, ReportStatus
from vigil.evidence.vault import Vault
from vigil.store import audit
from vigil.store.models import AuthorityReport, AuthorityReportItem, Site
from vigil.store.sites import get_site
from vigil.workers.authority_reports import CyberTiplineSender

report_app = typer.Typer(
    help="Reports to the authorities: queue, send, retry and show them.", no_args_is_help=True
)
evidence_app.add_typer(report_app, name="report")

ReportId = Annotated[
    int, typer.Argument(min=1, max=2**31 - 1, help="As `vigil evidence reports` shows it.")
]
_MAX_ERROR_SHOWN = 80


@report_app.command("ncmec")
def report_ncmec(
    uploader: Annotated[
        str | None, typer.Option("--uploader", help="The uploader id the site sent.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every uploader with items not yet reported.")
    ] = False,
    site: EverySiteOption = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Queue a CyberTipline report per uploader, covering all their items not yet reported."""
    if (uploader is None) == (not every):
        raise InvalidRequest("name one uploader (--uploader ID) or all of them (--all)")
    settings, database = open_database(data_dir, config)
    require_ready(settings.evidence.ncmec, settings.evidence.reporter.email)
    now = SystemClock().now()
    with database.session() as session:
        site_id = get_site(session, site).id if site is not None else None
        waiting = [
            (group.site_id, group.uploader_id)
            for group in reports.pending_by_uploader(session, Authority.NCMEC, site_id)
            if every or group.uploader_id == uploader
        ]
    if not waiting:
        who = "any uploader" if every else f"uploader {uploader!r}"
        raise NotFound(f"nothing of {who} awaits an NCMEC report")
    for site_of, uploader_id in waiting:
        with database.write_session() as session:
            report = queue_ncmec_report(
                session, settings, site_id=site_of, uploader_id=uploader_id, actor=actor(), now=now
            )
            count = len(reports.report_items(session, report.id))
            name = session.get(Site, site_of)
        console.print(
            f"queued NCMEC report {report.id}: uploader {uploader_id or '(none)'} on "
            f"{name.name if name else site_of}, {count} item(s)"
        )
    console.print(
        "a running server sends them at its next poll; or run `vigil evidence report send`"
    )


@evidence_app.command("reports")
def list_reports(
    authority: Annotated[
        Authority | None, typer.Option("--authority", help="Only reports to this authority.")
    ] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Reports to the authorities, newest first: their state and the authority's id."""
    _, database = open_database(data_dir, config)
    with database.session() as session:
        found = reports.reports(session, authority)
        counts = dict(
            session.execute(
                select(AuthorityReportItem.report_id, func.count())
                .where(AuthorityReportItem.report_id.in_([report.id for report in found]))
                .group_by(AuthorityReportItem.report_id)
            ).all()
        )
    if not found:
        console.print("no reports yet")
        return
    table = Table(
        "id", "authority", "uploader", "status", "external id", "attempts", "last error", "items"
    )
    for report in found:
        error = report.last_error or ""
        table.add_row(
            str(report.id),
            report.authority,
            report.uploader_id or "-",
            report.status,
            report.external_id or "-",
            str(report.attempts),
            error if len(error) <= _MAX_ERROR_SHOWN else error[: _MAX_ERROR_SHOWN - 1] + "…",
            str(counts.get(report.id, 0)),
        )
    console.print(table)


@report_app.command("send")
def report_send(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Send the NCMEC reports that are due, from this process, and say how each went."""
    settings, database = open_database(data_dir, config)
    require_ready(settings.evidence.ncmec, settings.evidence.reporter.email)
    sender = CyberTiplineSender(database, settings, Vault(settings, database), SystemClock())
    try:
        outcomes = sender.send_due_reports(limit=1000)
    finally:
        sender.close()
    if not outcomes:
        console.print("no NCMEC report is due")
    for outcome in outcomes:
        line = f"report {outcome.report_id}: {outcome.status}"
        if outcome.ncmec_report_id:
            line += f" (CyberTipline report {outcome.ncmec_report_id})"
        console.print(line + (f": {outcome.error}" if outcome.error else ""))
    if any(outcome.status == ReportStatus.FAILED for outcome in outcomes):
        raise typer.Exit(1)


@report_app.command("retry")
def report_retry(report_id: ReportId, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Put a failed NCMEC report back in the queue, with a fresh set of attempts."""
    _, database = open_database(data_dir, config)
    now = SystemClock().now()
    with database.write_session() as session:
        report = _find(session.get(AuthorityReport, report_id), report_id)
        if report.authority != Authority.NCMEC or report.status != ReportStatus.FAILED:
            raise Conflict(
                f"report {report_id} is a {report.status} {report.authority} report: only a "
                "failed NCMEC report can be retried"
            )
        report.status = ReportStatus.PENDING.value
        report.attempts = 0
        report.next_attempt_at = now
        report.lease_until = None
        audit.append(
            session,
            actor(),
            "report.ncmec.retry",
            str(report_id),
            {"last_error": report.last_error},
            at=now,
        )
    console.print(f"report {report_id} is queued again; it resumes where it stopped")


@report_app.command("show")
def report_show(report_id: ReportId, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """A report's state, its items, how far its sending got, and the exact payload."""
    _, database = open_database(data_dir, config)
    with database.session() as session:
        report = _find(session.get(AuthorityReport, report_id), report_id)
        items = session.execute(
            select(AuthorityReportItem.item_id, AuthorityReportItem.external_file_id)
            .where(AuthorityReportItem.report_id == report_id)
            .order_by(AuthorityReportItem.item_id)
        ).all()
    console.print(f"report {report.id} to {report.authority}: {report.status}", style="bold")
    for label, value in (
        ("environment", report.environment),
        ("uploader", report.uploader_id),
        ("external id", report.external_id),
        ("queued", f"{report.created_at.isoformat()} by {report.created_by}"),
        ("sent", report.sent_at.isoformat() if report.sent_at else None),
        ("attempts", str(report.attempts)),
        ("last error", report.last_error),
    ):
        if value:
            console.print(f"  {label}: {value}")
    for item_id, file_id in items:
        console.print(f"  item {item_id}" + (f" -> file {file_id}" if file_id else ""))
    progress = {key: value for key, value in report.progress.items() if key != "files"}
    files = {
        item: {key: value for key, value in entry.items() if key != "file_details"}
        for item, entry in report.progress.get("files", {}).items()
    }
    if report.progress:
        console.print("progress:", style="bold")
        console.print(json.dumps({**progress, "files": files}, indent=2), highlight=False)
    console.print("payload:", style="bold")
    console.print(report.payload, highlight=False, end="")
    for item_id, entry in report.progress.get("files", {}).items():
        if entry.get("file_details"):
            console.print(f"file details sent for item {item_id}:", style="bold")
            console.print(entry["file_details"], highlight=False, end="")


def _find(report: AuthorityReport | None, report_id: int) -> AuthorityReport:
    if report is None:
        raise NotFound(f"no report {report_id}")
    return report
