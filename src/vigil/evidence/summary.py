"""The readable summary of evidence: one printable HTML page for the NCA or an investigating force.

The facts are gathered here once, as plain JSON-ready dictionaries, so the NCA package's JSON and
its summary (and the police bundle's manifest and summary) say the same thing in the same words.
The page is self-contained: inline CSS, no scripts, no images (evidence images are never rendered,
not even as thumbnails), and a Content-Security-Policy that forbids loading anything. Every value
is escaped: screen names, EXIF tags and reasons are the uploader's or a person's free text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil import __version__
from vigil.config import Settings
from vigil.evidence.vault import EvidenceCause
from vigil.store.models import (
    CustodyEntry,
    EvidenceItem,
    LegalHold,
    LegalHoldItem,
    Site,
    Submission,
)

# The reason code a classifier's label leaves on a submission (policy/rules.py).
CLASSIFIER_REASON = "classifier_label"
# The account fields a site may send (api/schemas.py AccountDetails), in the order shown.
ACCOUNT_FIELDS = (
    "screen_name",
    "display_name",
    "first_name",
    "last_name",
    "date_of_birth",
    "email",
    "phone",
    "profile_url",
)


def utc_text(at: datetime) -> str:
    """A time as ISO 8601 in UTC, the one form every report and manifest uses."""
    return at.astimezone(UTC).isoformat()


def generated_by() -> dict[str, str]:
    return {"software": "Vigil", "version": __version__}


def provider_facts(settings: Settings) -> dict[str, Any]:
    """Who reports: the configured reporter (``evidence.reporter``)."""
    reporter = settings.evidence.reporter
    return {
        "organisation": reporter.organisation,
        "service_name": reporter.service_name,
        "country": reporter.country,
        "terms_of_service_url": reporter.terms_of_service_url,
        "contact": {
            "first_name": reporter.first_name,
            "last_name": reporter.last_name,
            "email": reporter.email,
            "phone": reporter.phone,
        },
    }


def user_facts(site: str, uploader_id: str | None, items: Sequence[EvidenceItem]) -> dict[str, Any]:
    """The uploader as the site described them with each upload: account details (the latest
    value of each), and every IP address and port with the time it was used."""
    account: dict[str, Any] = {}
    account_created_at: str | None = None
    addresses: list[dict[str, Any]] = []
    for item in sorted(items, key=lambda item: (item.received_at, item.id)):
        capture = item.capture
        for key, value in (capture.get("account") or {}).items():
            if value not in (None, ""):
                account[key] = value
        account_created_at = capture.get("account_created_at") or account_created_at
        if capture.get("ip") is not None or capture.get("port") is not None:
            addresses.append(
                {
                    "ip": capture.get("ip"),
                    "port": capture.get("port"),
                    "used_at": utc_text(item.received_at),
                    "item_id": item.id,
                    "user_agent": capture.get("user_agent"),
                }
            )
    return {
        "site": site,
        "uploader_id": uploader_id,
        **{field: account.get(field) for field in ACCOUNT_FIELDS},
        "account_created_at": account_created_at,
        "addresses": addresses,
    }


def users_facts(session: Session, items: Sequence[EvidenceItem]) -> list[dict[str, Any]]:
    """:func:`user_facts` for each uploader (on each site) among ``items``."""
    sites = {site.id: site.name for site in session.scalars(select(Site))}
    groups: dict[tuple[int, str | None], list[EvidenceItem]] = {}
    for item in items:
        groups.setdefault((item.site_id, item.uploader_id), []).append(item)
    return [
        user_facts(sites.get(site_id, str(site_id)), uploader_id, grouped)
        for (site_id, uploader_id), grouped in groups.items()
    ]


def detection_facts(item: EvidenceItem, submission: Submission | None) -> dict[str, Any]:
    """How the image was found illegal: which banks knew it, what a classifier said, who looked."""
    banks = sorted({str(match["bank"]) for match in item.matches if match.get("bank")})
    reasons = submission.reasons if submission is not None else []
    classifiers = [
        str(reason.get("message", ""))
        for reason in reasons
        if reason.get("code") == CLASSIFIER_REASON
    ]
    confirmed = item.cause == EvidenceCause.CONFIRMED_ILLEGAL
    methods = [
        method
        for method, used in (
            ("hash_match", bool(banks)),
            ("classifier", bool(classifiers)),
            ("human_review", confirmed),
        )
        if used
    ]
    return {
        "methods": methods,
        "banks": banks,
        "bank_matches": list(item.matches),
        "classifiers": classifiers,
        "reviewer": item.preserved_by if confirmed else None,
    }


def item_facts(item: EvidenceItem, submission: Submission | None) -> dict[str, Any]:
    """One image: its hashes, metadata as received, timing and how it was detected."""
    capture = item.capture
    return {
        "item_id": item.id,
        "uploader_id": item.uploader_id,
        "uploaded_at": utc_text(item.received_at),
        "detected_at": utc_text(item.preserved_at),
        "md5": item.md5,
        "sha1": item.sha1,
        "sha256": item.sha256,
        "pdq": [dict(entry) for entry in item.pdq],
        "byte_size": item.byte_size,
        "format": item.image_format,
        "exif": dict(item.exif),
        # Bank matches are never shown to anyone; only an image a reviewer confirmed was seen.
        "viewed_by_person": item.cause == EvidenceCause.CONFIRMED_ILLEGAL,
        "detection": detection_facts(item, submission),
        "ip": capture.get("ip"),
        "port": capture.get("port"),
        "user_agent": capture.get("user_agent"),
        "page_url": capture.get("page_url"),
        "ref": capture.get("ref"),
        "upload_kind": capture.get("kind"),
    }


def items_facts(session: Session, items: Sequence[EvidenceItem]) -> list[dict[str, Any]]:
    submissions = {
        row.id: row
        for row in session.scalars(
            select(Submission).where(Submission.id.in_([item.submission_id for item in items]))
        )
    }
    return [item_facts(item, submissions.get(item.submission_id)) for item in items]


def holds_facts(session: Session, item_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The legal holds on any of the items, with which of them each covers."""
    rows = session.execute(
        select(LegalHold, LegalHoldItem.item_id)
        .join(LegalHoldItem, LegalHoldItem.hold_id == LegalHold.id)
        .where(LegalHoldItem.item_id.in_(list(item_ids)))
        .order_by(LegalHold.placed_at, LegalHold.id, LegalHoldItem.item_id)
    ).all()
    holds: dict[int, dict[str, Any]] = {}
    for hold, item_id in rows:
        facts = holds.setdefault(
            hold.id,
            {
                "id": hold.id,
                "case": hold.case_name,
                "reason": hold.reason,
                "placed_by": hold.placed_by,
                "placed_at": utc_text(hold.placed_at),
                "released_at": utc_text(hold.released_at) if hold.released_at else None,
                "released_by": hold.released_by,
                "items": [],
            },
        )
        facts["items"].append(item_id)
    return list(holds.values())


def custody_facts(session: Session, item_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The items' custody entries in chain order, with the hashes that link them."""
    entries = session.scalars(
        select(CustodyEntry)
        .where(CustodyEntry.item_id.in_(list(item_ids)))
        .order_by(CustodyEntry.id)
    )
    return [
        {
            "id": entry.id,
            "item_id": entry.item_id,
            "action": entry.action,
            "actor": entry.actor,
            # Exactly as the entry's hash covers it (custody.entry_hash), so anyone can check it.
            "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "details": entry.details,
            "previous_hash": entry.previous_hash,
            "entry_hash": entry.entry_hash,
        }
        for entry in entries
    ]


@dataclass(frozen=True)
class Summary:
    """What the page shows; every part is plain data (the facts above)."""

    title: str
    about: Sequence[tuple[str, str]]  # the report or case: label, value
    provider: dict[str, Any]
    users: Sequence[dict[str, Any]]
    items: Sequence[dict[str, Any]]
    holds: Sequence[dict[str, Any]]
    custody: Sequence[dict[str, Any]]
    chain_head: tuple[int, str]
    generated_at: datetime


def shown_time(value: Any) -> str:
    """An ISO time as ``2026-03-02 09:30:00 UTC``; anything else as it is."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_environment = Environment(
    loader=PackageLoader("vigil.evidence", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["when"] = shown_time
_environment.filters["shown"] = _shown_value


def render_summary(summary: Summary) -> str:
    """The summary as one self-contained HTML page."""
    template = _environment.get_template("summary.html")
    return template.render(
        summary=summary,
        account_fields=ACCOUNT_FIELDS,
        generated_by=generated_by(),
    )
