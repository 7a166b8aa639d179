"""The UK NCA package: one per uploader, holding what the 2026 CSEA reporting regulations ask for
(provider, user with IP addresses and ports and times, content hashes and metadata, whether a
person viewed it, how and when it was detected), stored exactly and summarised safely."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.evidence.conftest import START, VaultSite, known_image, open_vault_site
from tests.images import encode, make_photo
from vigil.errors import Conflict, NotFound
from vigil.evidence import nca, reports
from vigil.evidence.nca import NcaPackage
from vigil.evidence.reports import Authority, ReportStatus
from vigil.evidence.vault import EvidenceCause
from vigil.policy import UploaderContext
from vigil.store.models import AuthorityReport, EvidenceItem, Submission

REPORTER = {
    "organisation": "Parents Forum Ltd",
    "service_name": "Parents Forum",
    "first_name": "Robin",
    "last_name": "Hale",
    "email": "safety@parents-forum.example",
    "phone": "+44 20 7946 0000",
    "country": "GB",
    "terms_of_service_url": "https://parents-forum.example/terms",
}
ACCOUNT = {
    "screen_name": "quiet_fox",
    "display_name": "Quiet Fox",
    "email": "fox@example.test",
    "phone": "+44 7700 900123",
    "profile_url": "https://forum.example.test/u/quiet_fox",
}

JOINED = START - timedelta(days=40, hours=5)


@pytest.fixture
def nca_site(tmp_path: Path, database_url: str | None) -> Iterator[VaultSite]:
    """A site whose reporter is configured, on SQLite and on PostgreSQL."""
    opened = open_vault_site(tmp_path / "data", database_url, evidence={"reporter": REPORTER})
    yield opened
    opened.runtime.close()


def prepare(site: VaultSite, uploader: str | None) -> NcaPackage:
    with site.runtime.database.write_session() as session:
        package = nca.prepare_nca_package(
            session,
            site.settings,
            site_id=site.site.id,
            uploader_id=uploader,
            actor="user:casey",
            now=site.clock.now(),
        )
        session.expunge(package.report)
        return package


def pending_ids(site: VaultSite, authority: Authority, uploader: str) -> list[str]:
    with site.runtime.database.session() as session:
        return [item.id for item in reports.pending_for(session, authority, site.site.id, uploader)]


def two_uploads(site: VaultSite) -> tuple[EvidenceItem, EvidenceItem]:
    """attacker-1 uploads twice, a day apart, from two addresses."""
    first = site.preserve(
        1, "attacker-1", ip="203.0.113.7", port=51234, account=ACCOUNT, account_created_at=JOINED
    )
    site.clock.advance(days=1, minutes=7)
    second = site.preserve(
        2,
        "attacker-1",
        ip="2001:db8::5",
        port=40001,
        account={**ACCOUNT, "phone": ""},
        account_created_at=JOINED,
    )
    return first, second


def test_the_package_holds_every_required_field_from_the_capture_and_settings(
    nca_site: VaultSite,
) -> None:
    first, second = two_uploads(nca_site)
    nca_site.clock.advance(hours=3)

    package = prepare(nca_site, "attacker-1")

    document = package.document
    assert document["schema"] == "vigil.nca-report/1"
    assert document["generated_by"]["software"] == "Vigil"
    assert document["report"]["id"] == package.report.id
    assert document["report"]["prepared_at"] == nca_site.clock.now().isoformat()
    assert document["provider"] == {
        "organisation": "Parents Forum Ltd",
        "service_name": "Parents Forum",
        "site": "parents-forum",
        "country": "GB",
        "terms_of_service_url": "https://parents-forum.example/terms",
        "contact": {
            "first_name": "Robin",
            "last_name": "Hale",
            "email": "safety@parents-forum.example",
            "phone": "+44 20 7946 0000",
        },
    }
    user = document["reported_user"]
    assert {key: user[key] for key in ACCOUNT} == ACCOUNT  # an empty later value keeps the phone
    assert user["uploader_id"] == "attacker-1"
    assert user["account_created_at"] == JOINED.isoformat()
    content = document["content"]
    assert [entry["item_id"] for entry in content] == [first.id, second.id]
    entry = content[0]
    assert (entry["md5"], entry["sha1"], entry["sha256"]) == (first.md5, first.sha1, first.sha256)
    assert entry["pdq"] == first.pdq
    assert entry["pdq"][0]["hash"]
    assert (entry["byte_size"], entry["format"]) == (len(known_image(1)), "jpeg")
    assert entry["exif"]["Image.Make"] == "Stand-in Camera Co"
    assert entry["exif"]["Image.Model"] == "Model 1"
    assert entry["viewed_by_person"] is False
    assert entry["detection"]["methods"] == ["hash_match"]
    assert entry["detection"]["banks"] == ["known-illegal"]
    assert entry["uploaded_at"] == START.isoformat()
    assert entry["detected_at"] == START.isoformat()
    assert (entry["ip"], entry["port"]) == ("203.0.113.7", 51234)
    assert entry["user_agent"] == "Mozilla/5.0 (stand-in)"
    assert entry["page_url"] == "https://forum.example.test/threads/42"
    assert document["timing"] == {
        "first_uploaded_at": START.isoformat(),
        "last_uploaded_at": second.received_at.isoformat(),
        "first_detected_at": START.isoformat(),
        "last_detected_at": second.preserved_at.isoformat(),
        "reported_at": nca_site.clock.now().isoformat(),
    }
    # The stored payload is the document, exactly.
    assert json.loads(package.report.payload) == document
    assert package.report.status == ReportStatus.PREPARED.value


def test_every_ip_address_and_port_is_listed_with_the_time_it_was_used(
    nca_site: VaultSite,
) -> None:
    first, second = two_uploads(nca_site)

    addresses = prepare(nca_site, "attacker-1").document["reported_user"]["addresses"]

    assert [(a["ip"], a["port"], a["used_at"], a["item_id"]) for a in addresses] == [
        ("203.0.113.7", 51234, first.received_at.isoformat(), first.id),
        ("2001:db8::5", 40001, second.received_at.isoformat(), second.id),
    ]


def test_one_package_per_uploader_covers_all_their_items_and_only_theirs(
    nca_site: VaultSite,
) -> None:
    first, second = two_uploads(nca_site)
    other = nca_site.preserve(3, "attacker-2")

    package = prepare(nca_site, "attacker-1")

    with nca_site.runtime.database.session() as session:
        covered = [item.id for item in reports.report_items(session, package.report.id)]
    assert covered == [first.id, second.id]
    assert other.id not in json.dumps(package.document)
    assert pending_ids(nca_site, Authority.NCA, "attacker-2") == [other.id]


def test_reported_items_are_no_longer_pending_for_the_nca_but_still_for_ncmec(
    nca_site: VaultSite,
) -> None:
    first, second = two_uploads(nca_site)

    prepare(nca_site, "attacker-1")

    assert pending_ids(nca_site, Authority.NCA, "attacker-1") == []
    assert pending_ids(nca_site, Authority.NCMEC, "attacker-1") == [first.id, second.id]
    with pytest.raises(Conflict, match="nothing to report to the NCA for uploader 'attacker-1'"):
        prepare(nca_site, "attacker-1")
    # A later upload by the same person is pending again, on its own.
    third = nca_site.preserve(4, "attacker-1")
    assert pending_ids(nca_site, Authority.NCA, "attacker-1") == [third.id]


def test_an_image_a_reviewer_confirmed_was_viewed_and_detected_by_a_person(
    sqlite_vault_site: VaultSite,
) -> None:
    site = sqlite_vault_site
    data = encode(make_photo(300, 200, seed=77), "JPEG", quality=90)
    outcome = site.runtime.screening.screen(
        site.site,
        data,
        UploaderContext(uploader_id="attacker-9", ip="198.51.100.4", port=443),
        idempotency_key=None,
        actor="test",
    )
    site.clock.advance(minutes=40)
    with site.runtime.database.write_session() as session:
        submission = session.get(Submission, outcome.submission.id)
        assert submission is not None
        site.runtime.vault.record(
            session,
            site.runtime.vault.seal(data),
            submission=submission,
            cause=EvidenceCause.CONFIRMED_ILLEGAL,
            matches=[],
            actor="user:casey",
            now=site.clock.now(),
        )

    entry = prepare(site, "attacker-9").document["content"][0]

    assert entry["viewed_by_person"] is True
    assert entry["detection"]["methods"] == ["human_review"]
    assert entry["detection"]["reviewer"] == "user:casey"
    assert entry["detected_at"] == site.clock.now().isoformat()
    assert entry["uploaded_at"] == START.isoformat()


def test_the_summary_escapes_hostile_strings(sqlite_vault_site: VaultSite) -> None:
    hostile: dict[str, Any] = {
        "screen_name": "<script>alert('fox')</script>",
        "display_name": '"><img src=x onerror=alert(1)>',
    }
    sqlite_vault_site.preserve(
        1, "<b>attacker</b>", account=hostile, user_agent="</td><script>steal()</script>"
    )

    page = prepare(sqlite_vault_site, "<b>attacker</b>").summary_html

    lowered = page.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "<b>" not in lowered
    assert "&lt;script&gt;alert(&#39;fox&#39;)&lt;/script&gt;" in page
    assert "&lt;b&gt;attacker&lt;/b&gt;" in page
    assert "default-src 'none'" in page  # nothing could load, even if something slipped by


def test_nca_files_give_back_the_stored_json_and_a_summary(nca_site: VaultSite) -> None:
    first, _ = two_uploads(nca_site)
    package = prepare(nca_site, "attacker-1")

    with nca_site.runtime.database.session() as session:
        document, summary = nca.nca_files(session, nca_site.settings, package.report.id)
        stored = session.scalar(
            select(AuthorityReport.payload).where(AuthorityReport.id == package.report.id)
        )

    assert document == stored == package.report.payload
    assert f"Report to the National Crime Agency: {package.report.id}" in summary
    assert first.sha256 in summary
    assert "quiet_fox" in summary
    assert "51234" in summary
    assert "reported" in summary  # the custody entry of the report itself
    with nca_site.runtime.database.session() as session, pytest.raises(NotFound):
        nca.nca_files(session, nca_site.settings, package.report.id + 100)


def test_an_ncmec_report_is_not_an_nca_package(sqlite_vault_site: VaultSite) -> None:
    item = sqlite_vault_site.preserve(1)
    with sqlite_vault_site.runtime.database.write_session() as session:
        report = reports.create_report(
            session,
            authority=Authority.NCMEC,
            site_id=item.site_id,
            uploader_id=item.uploader_id,
            items=[item],
            payload="<report/>",
            status=ReportStatus.PENDING,
            actor="test",
            now=sqlite_vault_site.clock.now(),
        )
        report_id = report.id

    with sqlite_vault_site.runtime.database.session() as session, pytest.raises(NotFound):
        nca.nca_files(session, sqlite_vault_site.settings, report_id)
