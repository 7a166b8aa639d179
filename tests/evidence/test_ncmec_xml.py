"""The CyberTipline documents: elements in the order of NCMEC's schema, values from the items'
capture and the settings, and nothing NCMEC refuses (empty elements, URLs with spaces, times
in the future, characters XML cannot carry)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from xml.etree.ElementTree import Element, fromstring

import pytest
from sqlalchemy import inspect

from tests.evidence.conftest import START, VaultSite, open_vault_site
from tests.evidence.ncmec_server import (
    FILE_DETAILS_ORDER,
    INCIDENT_SUMMARY_ORDER,
    IP_CAPTURE_EVENT_ORDER,
    PERSON_OR_USER_REPORTED_ORDER,
    REPORT_ORDER,
    schema_problems,
)
from vigil.evidence.ncmec import INCIDENT_TYPE, file_details_xml, report_xml
from vigil.evidence.vault import EvidenceCause
from vigil.store.models import EvidenceItem

REPORTER = {
    "organisation": "Parents Forum Ltd",
    "service_name": "Parents Forum",
    "first_name": "Tess",
    "last_name": "Safety",
    "email": "trust-and-safety@forum.example.test",
    "phone": "+44 20 7946 0000",
    "country": "GB",
    "terms_of_service_url": "https://forum.example.test/terms",
}
ACCOUNT = {
    "screen_name": "tiny-tim",
    "display_name": "Tim",
    "email": "tim@example.test",
    "phone": "+1 555 0100",
    "profile_url": "https://forum.example.test/u/tiny-tim",
    "first_name": "Timothy",
    "last_name": "Example",
    "date_of_birth": "1990-04-01",
}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[VaultSite]:
    opened = open_vault_site(
        tmp_path / "data", None, evidence={"reporter": REPORTER, "ncmec": {"enabled": True}}
    )
    yield opened
    opened.runtime.close()


def tags(element: Element | None) -> list[str]:
    assert element is not None
    return [child.tag for child in element]


def in_order(element: Element | None, order: list[str]) -> bool:
    found = tags(element)
    return found == sorted(found, key=order.index)


def changed(item: EvidenceItem, **changes: object) -> EvidenceItem:
    """A detached copy of an item with some values changed (a plain copy would share its ORM
    state with the original)."""
    columns = {column.key: getattr(item, column.key) for column in inspect(EvidenceItem).columns}
    return EvidenceItem(**{**columns, **changes})


def build(site: VaultSite, *items: EvidenceItem, uploader: str | None = "attacker-1") -> Element:
    return fromstring(report_xml(site.settings, site.site.name, uploader, items, site.clock.now()))


def test_the_report_holds_its_sections_in_the_schemas_order(site: VaultSite) -> None:
    item = site.preserve(1, account=ACCOUNT)
    site.clock.advance(minutes=5)

    report = build(site, item)

    assert tags(report) == [
        "incidentSummary",
        "internetDetails",
        "reporter",
        "personOrUserReported",
        "additionalInfo",
    ]
    assert in_order(report, REPORT_ORDER)
    assert tags(report.find("incidentSummary")) == ["incidentType", "incidentDateTime"]
    assert in_order(report.find("incidentSummary"), INCIDENT_SUMMARY_ORDER)
    reported = report.find("personOrUserReported")
    assert tags(reported) == [
        "personOrUserReportedPerson",
        "espIdentifier",
        "espService",
        "screenName",
        "displayName",
        "profileUrl",
        "ipCaptureEvent",
        "additionalInfo",
    ]
    assert in_order(reported, PERSON_OR_USER_REPORTED_ORDER)
    assert tags(report.find(".//ipCaptureEvent")) == ["ipAddress", "eventName", "dateTime", "port"]
    assert in_order(report.find(".//ipCaptureEvent"), IP_CAPTURE_EVENT_ORDER)
    assert schema_problems(report) == []


def test_the_report_takes_its_values_from_the_capture_and_the_settings(site: VaultSite) -> None:
    first = site.preserve(2, account=ACCOUNT)
    site.clock.advance(minutes=3)
    second = site.preserve(
        3, ip="198.51.100.4", port=40000, page_url="https://forum.example.test/t/9"
    )
    site.clock.advance(minutes=5)

    report = build(site, second, first)

    assert report.findtext("incidentSummary/incidentType") == INCIDENT_TYPE
    assert report.findtext("incidentSummary/incidentDateTime") == START.isoformat()
    urls = [url.text for url in report.iterfind("internetDetails/webPageIncident/url")]
    assert urls == ["https://forum.example.test/threads/42", "https://forum.example.test/t/9"]
    person = report.find("reporter/reportingPerson")
    assert person is not None
    assert [(child.tag, child.text) for child in person if child.text and child.text.strip()] == [
        ("firstName", "Tess"),
        ("lastName", "Safety"),
        ("phone", "+44 20 7946 0000"),
        ("email", "trust-and-safety@forum.example.test"),
    ]
    assert person.findtext("address/country") == "GB"
    assert report.findtext("reporter/legalURL") == "https://forum.example.test/terms"
    assert "Parents Forum Ltd" in (report.findtext("reporter/companyTemplate") or "")
    reported = report.find("personOrUserReported")
    assert reported is not None
    who = reported.find("personOrUserReportedPerson")
    assert who is not None
    assert [(child.tag, child.text) for child in who] == [
        ("firstName", "Timothy"),
        ("lastName", "Example"),
        ("phone", "+1 555 0100"),
        ("email", "tim@example.test"),
        ("email", "attacker-1@example.test"),
        ("dateOfBirth", "1990-04-01"),
    ]
    assert reported.findtext("espIdentifier") == "attacker-1"
    assert reported.findtext("espService") == "Parents Forum"
    assert reported.findtext("screenName") == "attacker-1-name", "the newest screen name"
    events = [
        [(child.tag, child.text) for child in event] for event in reported.iter("ipCaptureEvent")
    ]
    assert events == [
        [
            ("ipAddress", "203.0.113.7"),
            ("eventName", "Upload"),
            ("dateTime", first.received_at.isoformat()),
            ("port", "51234"),
        ],
        [
            ("ipAddress", "198.51.100.4"),
            ("eventName", "Upload"),
            ("dateTime", second.received_at.isoformat()),
            ("port", "40000"),
        ],
    ]
    summary = report.findtext("additionalInfo") or ""
    assert first.submission_id in summary
    assert second.submission_id in summary
    assert "matched known-illegal" in summary


def test_the_service_is_the_site_name_when_none_is_configured(tmp_path: Path) -> None:
    site = open_vault_site(tmp_path / "data", None, evidence={"reporter": {"email": "t@x.test"}})
    try:
        report = build(site, site.preserve(4))
    finally:
        site.runtime.close()
    assert report.findtext("personOrUserReported/espService") == "parents-forum"
    assert report.find("reporter/legalURL") is None
    assert report.find("reporter/companyTemplate") is None
    assert schema_problems(report) == []


def test_nothing_ncmec_refuses_is_ever_sent(site: VaultSite) -> None:
    item = site.preserve(5, account={"screen_name": "   ", "display_name": "bad\x01name"})
    hostile = changed(
        item,
        capture={
            **item.capture,
            "page_url": "https://forum.example.test/a page",  # whitespace: NCMEC answers 4100
            "port": 0,
        },
        received_at=site.clock.now() + timedelta(hours=1),
        exif={**item.exif, "Image.Make": "Evil\x00\x07Corp", "Image.Empty": "  "},
    )

    report = build(site, hostile, uploader=None)
    details = fromstring(file_details_xml("4564654", "b0754af766b426f2928a02c651ed4b99", hostile))

    assert schema_problems(report) == []
    assert schema_problems(details) == []
    assert report.find("internetDetails/webPageIncident/url") is None
    assert report.findtext("internetDetails/webPageIncident/additionalInfo")
    assert report.find("personOrUserReported/screenName") is None
    assert report.find("personOrUserReported/espIdentifier") is None
    assert report.findtext("personOrUserReported/displayName") == "badname"
    assert report.find(".//ipCaptureEvent/port") is None
    just_before_now = site.clock.now() - timedelta(seconds=1)  # NCMEC refuses future times
    assert report.findtext("incidentSummary/incidentDateTime") == just_before_now.isoformat()
    exif = {pair.findtext("name"): pair.findtext("value") for pair in details.iter("nameValuePair")}
    assert exif["Image.Make"] == "EvilCorp"
    assert "Image.Empty" not in exif


def test_file_details_follow_the_schemas_order_with_every_hash(site: VaultSite) -> None:
    item = site.preserve(6)

    details = fromstring(file_details_xml("4564654", "b0754af766b426f2928a02c651ed4b99", item))

    assert tags(details) == [
        "reportId",
        "fileId",
        "originalFileName",
        "fileViewedByEsp",
        "exifViewedByEsp",
        "publiclyAvailable",
        "fileRelevance",
        "originalFileHash",
        "originalFileHash",
        "originalFileHash",
        "originalFileHash",
        "ipCaptureEvent",
        "details",
        "details",
        "additionalInfo",
    ]
    assert in_order(details, FILE_DETAILS_ORDER)
    assert details.findtext("reportId") == "4564654"
    assert details.findtext("originalFileName") == f"{item.id}.jpg"
    hashes = [(entry.get("hashType"), entry.text) for entry in details.iter("originalFileHash")]
    assert hashes == [
        ("MD5", item.md5),
        ("SHA1", item.sha1),
        ("SHA256", item.sha256),
        ("PDQ", item.pdq[0]["hash"]),
    ]
    assert len(details.findall("ipCaptureEvent")) == 1
    assert details.findtext("ipCaptureEvent/dateTime") == item.received_at.isoformat()
    pairs = [
        (pair.get("type"), pair.findtext("name"), pair.findtext("value"))
        for pair in details.iter("nameValuePair")
    ]
    assert ("EXIF", "Image.Make", "Stand-in Camera Co") in pairs
    assert ("EXIF", "Image.Model", "Model 6") in pairs
    bank = [pair for pair in pairs if pair[0] == "HASH"]
    assert bank == [("HASH", "known-illegal (sha256)", f"entry {item.sha256}, distance 0")]
    assert schema_problems(details) == []


def test_a_bank_match_was_never_viewed_and_a_reviewers_confirmation_was(
    site: VaultSite,
) -> None:
    matched = site.preserve(7)
    confirmed = changed(matched, cause=EvidenceCause.CONFIRMED_ILLEGAL.value, matches=[])

    unseen = fromstring(file_details_xml("1", "f1", matched))
    seen = fromstring(file_details_xml("1", "f2", confirmed))

    assert unseen.findtext("fileViewedByEsp") == "false"
    assert seen.findtext("fileViewedByEsp") == "true"
    for details in (unseen, seen):
        assert details.findtext("exifViewedByEsp") == "false"
        assert details.findtext("publiclyAvailable") == "false"
        assert details.findtext("fileRelevance") == "Reported"
    assert "confirmed illegal by a child-safety reviewer" in (seen.findtext("additionalInfo") or "")
    assert "not viewed by staff" in (unseen.findtext("additionalInfo") or "")
