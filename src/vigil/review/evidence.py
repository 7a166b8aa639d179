"""The child-safety team's evidence pages: what still needs reporting, the reports made, holds.

Everything here needs the child-safety permission. Nothing here ever shows an image: an item's
page lists what is known about the upload (hashes, bank matches, capture, EXIF, custody), and
reading it is itself written into the chain of custody.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.api.auth import RuntimeDep, wake_worker
from vigil.errors import InvalidRequest, NotFound
from vigil.evidence import custody, nca, ncmec_queue, retention
from vigil.evidence.custody import CustodyAction
from vigil.evidence.reports import Authority, pending_by_uploader, reports
from vigil.review.web import NO_NUL, PREFIX, ChildSafety, Reviewer, render
from vigil.runtime import Runtime
from vigil.store import audit
from vigil.store.models import (
    AuthorityReport,
    AuthorityReportItem,
    EvidenceItem,
    LegalHold,
    LegalHoldItem,
    Site,
)

router = APIRouter(prefix=f"{PREFIX}/evidence", include_in_schema=False)

_ITEM_ID_CHARS = 36
_SEPARATORS = re.compile(r"[\s,;]+")
_AUTHORITY_NAMES = {
    Authority.NCMEC.value: "NCMEC CyberTipline (US)",
    Authority.NCA.value: "National Crime Agency (UK)",
    Authority.POLICE.value: "Police",
}

_INT_ID = Annotated[int, Path(ge=1, le=2**31 - 1)]
_ITEM_ID = Annotated[str, Path(min_length=1, max_length=_ITEM_ID_CHARS, pattern=NO_NUL)]
_SITE_ID = Annotated[int, Form(ge=1, le=2**31 - 1)]
_UPLOADER = Annotated[str, Form(max_length=200, pattern=NO_NUL)]
_CASE = Annotated[str, Form(max_length=200, pattern=NO_NUL)]
_REASON = Annotated[str, Form(max_length=2000, pattern=NO_NUL)]
_ITEM_LIST = Annotated[
    str, Form(max_length=retention.MAX_HOLD_ITEMS * (_ITEM_ID_CHARS + 2), pattern=NO_NUL)
]


@dataclass(frozen=True)
class PendingRow:
    """One uploader's items that no report to an authority covers yet."""

    site_id: int
    site_name: str
    uploader_id: str | None
    screen_name: str | None
    item_ids: list[str]
    first_received: datetime
    last_received: datetime


@dataclass(frozen=True)
class PendingSection:
    authority: Authority
    title: str
    rows: list[PendingRow]


@dataclass(frozen=True)
class ReportRow:
    report: AuthorityReport
    title: str
    site_name: str
    items: int


@dataclass(frozen=True)
class HoldRow:
    hold: LegalHold
    site_name: str
    item_ids: list[str]


def _back(*, anchor: str = "", **query: str | int) -> RedirectResponse:
    """To the evidence page, saying what was done (and where to look)."""
    fragment = f"#{anchor}" if anchor else ""
    return RedirectResponse(f"{PREFIX}/evidence?{urlencode(query)}{fragment}", status_code=303)


def _site_names(session: Session) -> dict[int, str]:
    rows = session.execute(select(Site.id, Site.name).order_by(Site.name))
    return {site_id: name for site_id, name in rows}


def _require_site(session: Session, site_id: int) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound(f"no site with id {site_id}")
    return site


def _screen_name(items: Sequence[EvidenceItem]) -> str | None:
    """The name the uploader showed most recently, to recognise them by."""
    for item in reversed(items):
        account = item.capture.get("account")
        if isinstance(account, dict) and account.get("screen_name"):
            return str(account["screen_name"])
    return None


def _pending(session: Session, authority: Authority, sites: dict[int, str]) -> PendingSection:
    rows = [
        PendingRow(
            site_id=group.site_id,
            site_name=sites.get(group.site_id, f"site {group.site_id}"),
            uploader_id=group.uploader_id,
            screen_name=_screen_name(group.items),
            item_ids=[item.id for item in group.items],
            first_received=group.first_received,
            last_received=max(item.received_at for item in group.items),
        )
        for group in pending_by_uploader(session, authority)
    ]
    return PendingSection(authority, _AUTHORITY_NAMES[authority], rows)


def _report_rows(session: Session, sites: dict[int, str]) -> list[ReportRow]:
    found = reports(session)
    rows = session.execute(
        select(AuthorityReportItem.report_id, func.count())
        .where(AuthorityReportItem.report_id.in_([report.id for report in found]))
        .group_by(AuthorityReportItem.report_id)
    )
    counts = {report_id: count for report_id, count in rows}
    return [
        ReportRow(
            report,
            _AUTHORITY_NAMES.get(report.authority, report.authority),
            sites.get(report.site_id, f"site {report.site_id}"),
            counts.get(report.id, 0),
        )
        for report in found
    ]


@router.get("")
def evidence_page(
    request: Request,
    reviewer: ChildSafety,
    runtime: RuntimeDep,
    hold_site: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    hold_uploader: Annotated[str, Query(max_length=200, pattern=NO_NUL)] = "",
    prepared: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> HTMLResponse:
    """Uploaders waiting for a report to each authority, the reports made, the active holds."""
    authorities = [Authority.NCMEC] if runtime.settings.evidence.ncmec.enabled else []
    authorities.append(Authority.NCA)
    with runtime.database.session() as session:
        sites = _site_names(session)
        pending = [_pending(session, authority, sites) for authority in authorities]
        report_rows = _report_rows(session, sites)
        holds = [
            HoldRow(
                hold,
                sites.get(hold.site_id, f"site {hold.site_id}"),
                [item.id for item in retention.hold_items(session, hold.id)],
            )
            for hold in retention.active_holds(session)
        ]
    return render(
        request,
        "evidence.html",
        {
            "pending": pending,
            "reports": report_rows,
            "holds": holds,
            "sites": sites,
            "hold_site": hold_site,
            "hold_uploader": hold_uploader,
            "prepared": prepared,
            "max_hold_items": retention.MAX_HOLD_ITEMS,
            "done": request.query_params.get("done"),
        },
        reviewer=reviewer,
    )


@router.post("/ncmec")
def report_to_ncmec(
    request: Request,
    reviewer: ChildSafety,
    runtime: RuntimeDep,
    site_id: _SITE_ID,
    uploader: _UPLOADER = "",
) -> RedirectResponse:
    """Queue one CyberTipline report covering everything of this uploader not yet reported."""
    with runtime.database.write_session() as session:
        report = ncmec_queue.queue_ncmec_report(
            session,
            runtime.settings,
            site_id=site_id,
            uploader_id=uploader or None,
            actor=reviewer.actor,
            now=runtime.clock.now(),
        )
        report_id = report.id
    wake_worker(request)
    return _back(done=f"NCMEC report {report_id} queued: Vigil sends it now", anchor="reports")


@router.post("/nca")
def prepare_for_nca(
    reviewer: ChildSafety, runtime: RuntimeDep, site_id: _SITE_ID, uploader: _UPLOADER = ""
) -> RedirectResponse:
    """Write the NCA package (JSON and a readable summary) for a person to submit."""
    with runtime.database.write_session() as session:
        package = nca.prepare_nca_package(
            session,
            runtime.settings,
            site_id=site_id,
            uploader_id=uploader or None,
            actor=reviewer.actor,
            now=runtime.clock.now(),
        )
        report_id = package.report.id
    return _back(
        done=f"NCA package {report_id} prepared: download it and submit it to the NCA",
        prepared=report_id,
    )


def _nca_download(runtime: Runtime, reviewer: Reviewer, report_id: int, kind: str) -> Response:
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        document, summary = nca.nca_files(session, runtime.settings, report_id, now=now)
        # The package holds the uploader's personal data: who took a copy is on record.
        audit.append(
            session, reviewer.actor, "report.nca.downloaded", str(report_id), {"file": kind}, at=now
        )
    body, media_type = (
        (document, "application/json") if kind == "json" else (summary, "text/html; charset=utf-8")
    )
    return Response(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="vigil-nca-report-{report_id}.{kind}"'
        },
    )


@router.get("/reports/{report_id}/nca.json")
def nca_json(report_id: _INT_ID, reviewer: ChildSafety, runtime: RuntimeDep) -> Response:
    return _nca_download(runtime, reviewer, report_id, "json")


@router.get("/reports/{report_id}/nca.html")
def nca_html(report_id: _INT_ID, reviewer: ChildSafety, runtime: RuntimeDep) -> Response:
    """The readable summary, as a file to save: never rendered as one of the app's pages."""
    return _nca_download(runtime, reviewer, report_id, "html")


@router.post("/holds")
def place_hold(
    reviewer: ChildSafety,
    runtime: RuntimeDep,
    site_id: _SITE_ID,
    case_name: _CASE,
    reason: _REASON,
    uploader: _UPLOADER = "",
    item_ids: _ITEM_LIST = "",
) -> RedirectResponse:
    """Keep an uploader's items, or the items listed, beyond their retention for a case."""
    uploader = uploader.strip()
    listed = [part for part in _SEPARATORS.split(item_ids) if part]
    with runtime.database.write_session() as session:
        _require_site(session, site_id)
        if uploader:
            found = retention.uploader_item_ids(session, site_id, uploader)
            if not found:
                raise NotFound(f"uploader {uploader!r} has no evidence kept on this site")
            listed = [*found, *listed]
        wanted = list(dict.fromkeys(listed))
        if not wanted:
            raise InvalidRequest("name the items to hold: an uploader's id, or item ids")
        hold = retention.place_hold(
            session,
            site_id=site_id,
            case_name=case_name,
            reason=reason,
            item_ids=wanted,
            actor=reviewer.actor,
            now=runtime.clock.now(),
        )
        hold_id, case = hold.id, hold.case_name
    count = f"{len(wanted)} item{'s' if len(wanted) != 1 else ''}"
    return _back(done=f"hold {hold_id} placed on {count} for {case}", anchor=f"hold-{hold_id}")


@router.post("/holds/{hold_id}/release")
def release_hold(
    hold_id: _INT_ID, reviewer: ChildSafety, runtime: RuntimeDep, reason: _REASON
) -> RedirectResponse:
    """The case no longer needs the items: their retention runs again."""
    with runtime.database.write_session() as session:
        retention.release_hold(
            session, hold_id, reason=reason, actor=reviewer.actor, now=runtime.clock.now()
        )
    return _back(done=f"hold {hold_id} released", anchor="holds")


@router.get("/items/{item_id}")
def item_page(
    item_id: _ITEM_ID, request: Request, reviewer: ChildSafety, runtime: RuntimeDep
) -> HTMLResponse:
    """What is known about one kept image, never the image; reading it is on record."""
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        item = session.get(EvidenceItem, item_id)
        if item is None:
            raise NotFound(f"no evidence item {item_id}")
        custody.append(
            session, item.id, CustodyAction.VIEWED, reviewer.actor, {"shown": "metadata"}, now
        )
        audit.append(session, reviewer.actor, "evidence.viewed", item.id, {}, at=now)
        site = session.get(Site, item.site_id)
        holds = session.scalars(
            select(LegalHold)
            .join(LegalHoldItem, LegalHoldItem.hold_id == LegalHold.id)
            .where(LegalHoldItem.item_id == item.id)
            .order_by(LegalHold.placed_at)
        ).all()
        covering = session.scalars(
            select(AuthorityReport)
            .join(AuthorityReportItem, AuthorityReportItem.report_id == AuthorityReport.id)
            .where(AuthorityReportItem.item_id == item.id)
            .order_by(AuthorityReport.created_at)
        ).all()
        entries = custody.entries_for(session, item.id)
    capture = dict(item.capture)
    account = capture.pop("account", None)
    return render(
        request,
        "evidence_item.html",
        {
            "item": item,
            "site_name": site.name if site is not None else f"site {item.site_id}",
            "capture": capture,
            "account": account if isinstance(account, dict) else {},
            "holds": holds,
            "on_hold": any(hold.released_at is None for hold in holds),
            "reports": covering,
            "authority_names": _AUTHORITY_NAMES,
            "entries": entries,
        },
        reviewer=reviewer,
    )
