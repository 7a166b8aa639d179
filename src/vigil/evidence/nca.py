"""The UK NCA report package: one JSON document per uploader, and a readable summary of it.

UK providers must report detected child sexual exploitation and abuse content to the National
Crime Agency (Online Safety Act 2023 s.66); the 2026 regulations list what a report holds: the
provider, the user (ids, names, email, IP addresses *and ports*, with times), the content (hash
values, metadata, whether a person viewed it), timing and how it was detected. The NCA's own
interface may change, so Vigil prepares a package a person submits: the JSON is stored as the
report's payload (exactly what was handed over) and the summary is rendered from it on demand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from vigil.config import Settings
from vigil.errors import NotFound
from vigil.evidence import custody, reports
from vigil.evidence.reports import Authority, ReportStatus
from vigil.evidence.summary import (
    Summary,
    custody_facts,
    generated_by,
    holds_facts,
    items_facts,
    provider_facts,
    render_summary,
    shown_time,
    user_facts,
    utc_text,
)
from vigil.store.models import AuthorityReport

# Bump when a field changes meaning or goes away (adding a field does not).
SCHEMA = "vigil.nca-report/1"
LEGAL_BASIS = "Online Safety Act 2023, section 66 (UK CSEA content reporting)"


@dataclass(frozen=True)
class NcaPackage:
    """A prepared report: its row, the JSON document (stored as the payload) and its summary."""

    report: AuthorityReport
    document: dict[str, Any]
    summary_html: str


def prepare_nca_package(
    session: Session,
    settings: Settings,
    *,
    site_id: int,
    uploader_id: str | None,
    actor: str,
    now: datetime,
) -> NcaPackage:
    """The package covering every item of one uploader no NCA report covers yet."""
    site, items = reports.items_to_report(session, Authority.NCA, site_id, uploader_id)
    # The row first: the document names its report id, which the NCA can quote back.
    report = reports.create_report(
        session,
        authority=Authority.NCA,
        site_id=site_id,
        uploader_id=uploader_id,
        items=items,
        payload="",
        status=ReportStatus.PREPARED,
        actor=actor,
        now=now,
    )
    content = items_facts(session, items)
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_by": generated_by(),
        "report": {
            "id": report.id,
            "legal_basis": LEGAL_BASIS,
            "prepared_at": utc_text(now),
            "prepared_by": actor,
        },
        "provider": {**provider_facts(settings), "site": site.name},
        "reported_user": user_facts(site.name, uploader_id, items),
        "content": content,
        "timing": {
            "first_uploaded_at": min(entry["uploaded_at"] for entry in content),
            "last_uploaded_at": max(entry["uploaded_at"] for entry in content),
            "first_detected_at": min(entry["detected_at"] for entry in content),
            "last_detected_at": max(entry["detected_at"] for entry in content),
            "reported_at": utc_text(now),
        },
    }
    report.payload = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    session.flush()
    return NcaPackage(report, document, _summary(session, report, document, now))


def nca_files(
    session: Session, settings: Settings, report_id: int, *, now: datetime | None = None
) -> tuple[str, str]:
    """(the JSON exactly as stored, its summary as HTML) for an NCA report prepared earlier.

    The summary shows the package's facts as prepared, and the items' holds and custody as they
    are ``now`` (which includes the entry recording the report itself).
    """
    del settings  # the package holds everything the summary shows; kept for a stable interface
    report = session.get(AuthorityReport, report_id)
    if report is None or report.authority != Authority.NCA.value:
        raise NotFound(f"no NCA report {report_id}")
    document = json.loads(report.payload)
    return report.payload, _summary(session, report, document, now or datetime.now(UTC))


def _summary(
    session: Session, report: AuthorityReport, document: dict[str, Any], at: datetime
) -> str:
    """The page for a package: the document's facts, and the items' holds and custody now."""
    item_ids = [entry["item_id"] for entry in document["content"]]
    prepared = document["report"]
    about = [
        ("Report", f"NCA report {report.id} ({document['schema']})"),
        ("Legal basis", prepared["legal_basis"]),
        ("Prepared", f"{shown_time(prepared['prepared_at'])} by {prepared['prepared_by']}"),
        ("Status", report.status),
        ("Items", str(len(item_ids))),
    ]
    return render_summary(
        Summary(
            title=f"Report to the National Crime Agency: {report.id}",
            about=about,
            provider=document["provider"],
            users=[document["reported_user"]],
            items=document["content"],
            holds=holds_facts(session, item_ids),
            custody=custody_facts(session, item_ids),
            chain_head=custody.head(session),
            generated_at=at,
        )
    )
