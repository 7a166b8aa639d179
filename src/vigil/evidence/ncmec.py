"""Reports to NCMEC's CyberTipline: the ``<report>`` and ``<fileDetails>`` documents.

NCMEC validates every document against its XSD and refuses (code 4100) any element out of
order, an empty optional element, or a URL with whitespace in it. So each document is built
here in the schema's order, one element per line, and an element whose value is missing is left
out rather than sent empty. Text from uploaders (EXIF, account details) is cleaned of the
characters XML cannot carry.

One report covers one uploader: every item of theirs that no earlier NCMEC report covered.
Queueing a report (and the settings it needs) is :mod:`vigil.evidence.ncmec_queue`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from xml.etree.ElementTree import Element, indent, tostring

from vigil.config import Settings
from vigil.evidence.vault import EvidenceCause
from vigil.intake.formats import ImageFormat
from vigil.store.models import EvidenceItem

INCIDENT_TYPE = "Child Pornography (possession, manufacture, and distribution)"
UPLOAD_EVENT = "Upload"
# Where the metadata type (EXIF, HASH) goes: the public sources on NCMEC's schema disagree, and
# the only explicit one puts it on each nameValuePair. If NCMEC's /xsd says "details", change
# this; both placements are built below.
DETAILS_TYPE_ON: Literal["nameValuePair", "details"] = "nameValuePair"
MAX_FREE_TEXT = 3000  # NCMEC's limit on additionalInfo and similar free text
MAX_URL = 2083
MAX_PAIR_NAME = 64
_FUTURE_MARGIN = timedelta(seconds=1)  # NCMEC refuses an incident time in the future
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", re.IGNORECASE)
_EXTENSIONS = {
    ImageFormat.JPEG: "jpg",
    ImageFormat.PNG: "png",
    ImageFormat.GIF: "gif",
    ImageFormat.WEBP: "webp",
    ImageFormat.BMP: "bmp",
    ImageFormat.TIFF: "tif",
    ImageFormat.HEIF: "heic",
}
_MEDIA_TYPES = {image_format: f"image/{image_format.value}" for image_format in ImageFormat}


# --- building blocks ------------------------------------------------------------------------------


def _clean(value: object, limit: int | None = None) -> str | None:
    """Text XML can carry, trimmed and cut to ``limit``; None when nothing is left."""
    if value is None:
        return None
    text = _NOT_XML.sub("", str(value)).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text or None


def _url(value: object) -> str | None:
    """A web address NCMEC accepts, or None: whitespace or control characters give 4100."""
    if not isinstance(value, str) or len(value) > MAX_URL or not _URL.fullmatch(value):
        return None
    return value


def _node(tag: str, *children: Element | None, attrs: dict[str, str] | None = None) -> Element:
    element = Element(tag, attrs or {})
    element.extend(child for child in children if child is not None)
    return element


def _group(
    tag: str, *children: Element | None, attrs: dict[str, str] | None = None
) -> Element | None:
    """An element holding others, left out when none of them has a value."""
    element = _node(tag, *children, attrs=attrs)
    return element if len(element) else None


def _text(
    tag: str, value: object, *, limit: int | None = None, attrs: dict[str, str] | None = None
) -> Element | None:
    """A leaf element, left out when the value is missing or blank."""
    text = _clean(value, limit)
    if text is None:
        return None
    element = Element(tag, attrs or {})
    element.text = text
    return element


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _document(root: Element) -> str:
    indent(root)  # whitespace between elements is allowed by the schema and helps people read it
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="unicode") + "\n"


def _distinct(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def _account(item: EvidenceItem) -> dict[str, Any]:
    account = item.capture.get("account")
    return account if isinstance(account, dict) else {}


def _latest(items: Sequence[EvidenceItem], key: str) -> str | None:
    """The newest value the site sent for an account field (people change their names)."""
    for item in reversed(items):
        value = _clean(_account(item).get(key))
        if value is not None:
            return value
    return None


def _date_of_birth(items: Sequence[EvidenceItem]) -> str | None:
    text = _latest(items, "date_of_birth")
    try:
        return date.fromisoformat(text).isoformat() if text else None
    except ValueError:
        return None


def _ip_event(ip: object, port: object, moment: datetime) -> Element | None:
    """An upload's address, in the schema's order: ipAddress, eventName, dateTime, port."""
    address = _clean(ip, 45)
    if address is None:
        return None
    valid_port = port if type(port) is int and 1 <= port <= 65535 else None
    return _node(
        "ipCaptureEvent",
        _text("ipAddress", address),
        _text("eventName", UPLOAD_EVENT),
        _text("dateTime", _when(moment)),
        _text("port", valid_port),
    )


def _detection(item: EvidenceItem) -> str:
    """How Vigil came to hold the item, in a sentence for a reader at NCMEC."""
    if item.cause == EvidenceCause.CONFIRMED_ILLEGAL:
        return (
            "held for review and confirmed illegal by a child-safety reviewer "
            f"({item.preserved_by}), who viewed it"
        )
    banks = _distinct(str(match.get("bank")) for match in item.matches) or ["a hash bank"]
    kinds = _distinct(str(match.get("hash_type")).upper() for match in item.matches)
    return (
        f"blocked at upload: its {'/'.join(kinds) or 'hash'} matched {', '.join(banks)}; "
        "never published and not viewed by staff"
    )


def original_file_name(item: EvidenceItem) -> str:
    """The name the file is uploaded under: the uploader's own name is never known to Vigil."""
    image_format = _format(item)
    return f"{item.id}.{_EXTENSIONS[image_format] if image_format else 'bin'}"


def media_type(item: EvidenceItem) -> str:
    image_format = _format(item)
    return _MEDIA_TYPES[image_format] if image_format else "application/octet-stream"


def _format(item: EvidenceItem) -> ImageFormat | None:
    try:
        return ImageFormat(item.image_format)
    except ValueError:
        return None


# --- the documents --------------------------------------------------------------------------------


def report_xml(
    settings: Settings,
    site_name: str,
    uploader_id: str | None,
    items: Sequence[EvidenceItem],
    now: datetime,
) -> str:
    """The ``<report>`` for ``/submit``: one uploader's items, oldest first."""
    if not items:
        raise ValueError("a report covers at least one item")
    items = sorted(items, key=lambda item: (item.received_at, item.id))
    reporter = settings.evidence.reporter
    service = reporter.service_name or site_name
    root = _node(
        "report",
        _node(
            "incidentSummary",
            _text("incidentType", INCIDENT_TYPE),
            _text("incidentDateTime", _when(min(items[0].received_at, now - _FUTURE_MARGIN))),
        ),
        _internet_details(items, service),
        _node(
            "reporter",
            _node(
                "reportingPerson",
                _text("firstName", reporter.first_name, limit=100),
                _text("lastName", reporter.last_name, limit=100),
                _text("phone", reporter.phone, limit=50),
                _text("email", reporter.email, limit=255),
                _group("address", _text("country", reporter.country), attrs={"type": "Business"}),
            ),
            _text("companyTemplate", _company(reporter.organisation, service), limit=MAX_FREE_TEXT),
            _text("legalURL", _url(reporter.terms_of_service_url)),
        ),
        _person_or_user_reported(items, uploader_id, service),
        _text("additionalInfo", _how_detected(items), limit=MAX_FREE_TEXT),
    )
    return _document(root)


def _internet_details(items: Sequence[EvidenceItem], service: str) -> Element:
    """Where the images were to appear; NCMEC wants one incident even without an address."""
    urls = _distinct(_url(item.capture.get("page_url")) for item in items)
    missing = None if urls else f"Uploaded to {service}; the site gave no page address."
    return _node(
        "internetDetails",
        _node(
            "webPageIncident",
            *(_text("url", url) for url in urls),
            _text("additionalInfo", missing),
        ),
    )


def _person_or_user_reported(
    items: Sequence[EvidenceItem], uploader_id: str | None, service: str
) -> Element | None:
    accounts = [_account(item) for item in items]

    def every(key: str) -> list[str]:
        return _distinct(_clean(account.get(key)) for account in accounts)

    events: dict[tuple[object, object, datetime], Element | None] = {}
    for item in items:
        ip, port = item.capture.get("ip"), item.capture.get("port")
        if (ip, port, item.received_at) not in events:
            events[ip, port, item.received_at] = _ip_event(ip, port, item.received_at)
    return _group(
        "personOrUserReported",
        _group(
            "personOrUserReportedPerson",
            _text("firstName", _latest(items, "first_name"), limit=100),
            _text("lastName", _latest(items, "last_name"), limit=100),
            *(_text("phone", phone, limit=50) for phone in every("phone")),
            *(_text("email", email, limit=255) for email in every("email")),
            _text("dateOfBirth", _date_of_birth(items)),
        ),
        _text("espIdentifier", uploader_id, limit=255),
        _text("espService", service, limit=100),
        _text("screenName", _latest(items, "screen_name"), limit=256),
        *(_text("displayName", name) for name in every("display_name")),
        *(
            _text("profileUrl", url)
            for url in _distinct(_url(a.get("profile_url")) for a in accounts)
        ),
        *events.values(),
        _text("additionalInfo", _about_uploader(items), limit=MAX_FREE_TEXT),
    )


def _company(organisation: str, service: str) -> str | None:
    if not organisation.strip():
        return None
    return f"Reported by {organisation.strip()} for {service}, with Vigil."


def _about_uploader(items: Sequence[EvidenceItem]) -> str | None:
    facts = []
    created = _distinct(_clean(item.capture.get("account_created_at")) for item in items)
    if created:
        facts.append(f"Account created: {created[0]}.")
    agents = _distinct(_clean(item.capture.get("user_agent"), 300) for item in items)
    if agents:
        facts.append("User agent at upload: " + "; ".join(agents) + ".")
    return " ".join(facts) or None


def _how_detected(items: Sequence[EvidenceItem]) -> str:
    lines = [f"{len(items)} image(s) detected by Vigil (an upload screening service):"]
    for number, item in enumerate(items, 1):
        line = (
            f"{number}. received {_when(item.received_at)}, {_detection(item)}; "
            f"Vigil submission {item.submission_id}, evidence item {item.id}."
        )
        if sum(len(text) + 1 for text in lines) + len(line) > MAX_FREE_TEXT - 40:
            lines.append(f"... and {len(items) - number + 1} more (listed per file).")
            break
        lines.append(line)
    return "\n".join(lines)


def file_details_xml(report_id: str, file_id: str, item: EvidenceItem) -> str:
    """The ``<fileDetails>`` for ``/fileinfo``: the hashes, the upload, the EXIF, the matches."""
    hashes = [("MD5", item.md5), ("SHA1", item.sha1), ("SHA256", item.sha256)]
    hashes += [("PDQ", str(entry.get("hash"))) for entry in item.pdq if entry.get("hash")]
    exif = [(name, value) for name, value in sorted(item.exif.items())]
    matches = [
        (f"{match.get('bank')} ({match.get('hash_type')})", _match_text(match))
        for match in item.matches
    ]
    root = _node(
        "fileDetails",
        _text("reportId", report_id),
        _text("fileId", file_id),
        _text("originalFileName", original_file_name(item)),
        _text("fileViewedByEsp", _flag(item.cause == EvidenceCause.CONFIRMED_ILLEGAL)),
        _text("exifViewedByEsp", _flag(False)),
        _text("publiclyAvailable", _flag(False)),  # screened before publication
        _text("fileRelevance", "Reported"),
        *(
            _text("originalFileHash", value, attrs={"hashType": kind})
            for kind, value in dict.fromkeys(hashes)
        ),
        _ip_event(item.capture.get("ip"), item.capture.get("port"), item.received_at),
        _details("EXIF", exif),
        _details("HASH", matches),
        _text("additionalInfo", _about_file(item), limit=MAX_FREE_TEXT),
    )
    return _document(root)


def _details(kind: str, pairs: Sequence[tuple[str, object]]) -> Element | None:
    """A ``details`` group of one metadata type (EXIF, or HASH for the bank matches)."""
    typed = {"type": kind}
    on_pair = typed if DETAILS_TYPE_ON == "nameValuePair" else None
    return _group(
        "details",
        *(_pair(name, value, on_pair) for name, value in pairs),
        attrs=None if on_pair else typed,
    )


def _pair(name: object, value: object, attrs: dict[str, str] | None) -> Element | None:
    shown = _clean(_plain(value), MAX_FREE_TEXT)
    label = _clean(name, MAX_PAIR_NAME)
    if shown is None or label is None:
        return None
    return _node("nameValuePair", _text("name", label), _text("value", shown), attrs=attrs)


def _plain(value: object) -> object:
    if isinstance(value, list):
        return ", ".join(str(part) for part in value)
    return value


def _match_text(match: dict[str, Any]) -> str:
    text = f"entry {match.get('entry') or match.get('hash')}, distance {match.get('distance')}"
    text += f", frame {match['frame']}" if match.get("frame") else ""
    # The upload matched an edited copy of itself (mirrored, turned, border removed).
    return text + (f", edited copy {match['variant']}" if match.get("variant") else "")


def _about_file(item: EvidenceItem) -> str:
    where = _url(item.capture.get("page_url"))
    return (
        f"Vigil {_detection(item)}. Received {_when(item.received_at)}"
        + (f", to appear on {where}" if where else "")
        + f". Vigil submission {item.submission_id}, evidence item {item.id}."
    )
