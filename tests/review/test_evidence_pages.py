"""The child-safety team's evidence pages: who may open them, what waits for a report, reports
queued and prepared, legal holds, and an item's page that never carries the image.

Known illegal images are generated stand-ins made "known" by putting their hash in a block bank.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.api.conftest import add_hashes, create_bank, screen
from tests.evidence.conftest import known_image
from tests.live import free_port, live_server
from tests.review.conftest import PASSWORD, Browsers, Person, add_user, signed_in
from tests.review.test_browser import _artefact, chromium  # noqa: F401 - the browser, shared
from tests.review.test_previews import _IMAGE_TRACES, _IMAGE_TRACES_BASE64
from vigil.api import create_app
from vigil.config import Settings
from vigil.evidence import custody, retention
from vigil.evidence.vault import find_item_for_submission
from vigil.review.accounts import UserRole
from vigil.runtime import Runtime
from vigil.store.models import AuditEvent, AuthorityReport, EvidenceItem, LegalHold

HOSTILE = "<script>alert(1)</script>"
# NCMEC switched on, pointed at a port nothing listens on: with no worker, nothing is sent.
NCMEC_ON = {
    "ncmec": {
        "enabled": True,
        "base_url": f"http://127.0.0.1:{free_port()}",
        "username": "vigil-test",
        "password": "not-a-real-password",
    },
    "reporter": {
        "organisation": "Parents Forum Ltd",
        "service_name": "Parents Forum",
        "first_name": "Casey",
        "last_name": "Lead",
        "email": "safety@forum.example.test",
        "phone": "+44 20 7946 0000",
        "country": "GB",
    },
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Settings:
    """No background worker (a queued report stays queued); ``evidence`` settings come through
    indirect parametrisation."""
    evidence: dict[str, Any] = getattr(request, "param", {})
    return make_settings(workers={"embedded": False}, evidence=evidence)


@pytest.fixture
def lead(runtime: Runtime, app_client: Browsers) -> Person:
    return signed_in(runtime, app_client, "carol", UserRole.CHILD_SAFETY)


@dataclass
class Site:
    """The site's side: screens uploads through the API, as a site does."""

    runtime: Runtime
    client: TestClient
    headers: dict[str, str]

    def block(self, seed: int, uploader: str = "attacker-1", **account: str) -> EvidenceItem:
        """Upload ``known_image(seed)`` as a known illegal image; returns the vault item."""
        data = known_image(seed)
        add_hashes(self.client, self.headers, "known", [hashlib.sha256(data).hexdigest()])
        context = {
            "uploader_id": uploader,
            "ip": "203.0.113.7",
            "port": 51234,
            "user_agent": "Mozilla/5.0 (stand-in)",
            "account": {"screen_name": f"{uploader}-name", "email": f"{uploader}@example.test"}
            | account,
        }
        response = screen(self.client, self.headers, data, context)
        assert response.status_code == 200, response.text
        assert response.json()["decision"] == "block"
        with self.runtime.database.session() as session:
            item = find_item_for_submission(session, response.json()["submission_id"])
            assert item is not None, "a known illegal image is kept as evidence"
            return item


@pytest.fixture
def site(runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]) -> Site:
    client = app_client()
    create_bank(client, site_headers, "known", "sha256", "block")
    return Site(runtime, client, site_headers)


def custody_actions(runtime: Runtime, item_id: str) -> list[tuple[str, str]]:
    with runtime.database.session() as session:
        return [(entry.action, entry.actor) for entry in custody.entries_for(session, item_id)]


def all_reports(runtime: Runtime) -> list[AuthorityReport]:
    with runtime.database.session() as session:
        return list(session.scalars(select(AuthorityReport).order_by(AuthorityReport.id)))


def section(page: str, element_id: str) -> str:
    """The HTML of the page from the element with ``element_id`` to the next section."""
    start = page.index(f'id="{element_id}"')
    end = page.find("<section", start + 1)
    return page[start : end if end != -1 else len(page)]


def error_message(response: Any) -> str:
    found = re.search(r'<p class="error" role="alert">(.*?)</p>', response.text, re.S)
    assert found is not None, "the error page says what went wrong"
    return html.unescape(found.group(1))


# --- who may open them ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", [UserRole.VIEWER, UserRole.MODERATOR])
def test_viewers_and_moderators_are_refused_every_evidence_page_and_form(
    runtime: Runtime,
    app_client: Browsers,
    site: Site,
    role: UserRole,
) -> None:
    item = site.block(seed=1)
    person = signed_in(runtime, app_client, "pat", role)
    assert 'href="/review/evidence"' not in person.get("/review/queue").text
    pages = [
        "/review/evidence",
        f"/review/evidence/items/{item.id}",
        "/review/evidence/reports/1/nca.json",
        "/review/evidence/reports/1/nca.html",
    ]
    for url in pages:
        response = person.get(url)
        assert response.status_code == 403, url
        assert "may not do this" in error_message(response), url
        assert item.sha256 not in response.text
    forms: dict[str, dict[str, str]] = {
        "/review/evidence/ncmec": {"site_id": str(item.site_id), "uploader": "attacker-1"},
        "/review/evidence/nca": {"site_id": str(item.site_id), "uploader": "attacker-1"},
        "/review/evidence/holds": {
            "site_id": str(item.site_id),
            "case_name": "case",
            "reason": "keep them",
            "uploader": "attacker-1",
        },
        "/review/evidence/holds/1/release": {"reason": "done"},
    }
    for url, form in forms.items():
        assert person.post(url, **form).status_code == 403, url
    assert all_reports(runtime) == []
    with runtime.database.session() as session:
        assert retention.active_holds(session) == []
    assert [action for action, _ in custody_actions(runtime, item.id)] == ["stored"]


@pytest.mark.parametrize("role", [UserRole.CHILD_SAFETY, UserRole.ADMIN])
def test_the_child_safety_team_and_admins_find_the_evidence_page_in_the_menu(
    runtime: Runtime, app_client: Browsers, role: UserRole
) -> None:
    person = signed_in(runtime, app_client, "sam", role)
    assert 'href="/review/evidence"' in person.get("/review/queue").text
    page = person.get("/review/evidence")
    assert page.status_code == 200, page.text
    assert "<h1>Evidence</h1>" in page.text


def test_signed_out_the_evidence_page_asks_to_sign_in(app_client: Browsers) -> None:
    response = app_client().get("/review/evidence", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/review/login?next=/review/evidence"


# --- waiting for a report ------------------------------------------------------------------------


def test_blocked_images_wait_for_an_nca_report_per_uploader(lead: Person, site: Site) -> None:
    first = site.block(seed=1, uploader="attacker-1")
    second = site.block(seed=2, uploader="attacker-1")
    other = site.block(seed=3, uploader="attacker-2")
    page = lead.get("/review/evidence").text
    assert 'id="pending-ncmec"' not in page, "NCMEC is offered only when it is configured"
    waiting = section(page, "pending-nca")
    rows = waiting.split('class="pending-uploader"')[1:]
    assert len(rows) == 2
    assert "attacker-1" in rows[0]
    assert '<td class="num">2</td>' in rows[0]
    assert f"/review/evidence/items/{first.id}" in rows[0]
    assert f"/review/evidence/items/{second.id}" in rows[0]
    assert "attacker-1-name" in rows[0], "the screen name helps recognise the person"
    assert "attacker-2" in rows[1]
    assert '<td class="num">1</td>' in rows[1]
    assert f"/review/evidence/items/{other.id}" in rows[1]
    assert "Prepare NCA package" in waiting
    assert "Report to NCMEC" not in page


@pytest.mark.parametrize("settings", [NCMEC_ON], indirect=True)
def test_a_cybertipline_report_is_queued_from_the_page_and_listed_as_pending(
    runtime: Runtime, lead: Person, site: Site
) -> None:
    items = [site.block(seed=seed) for seed in (1, 2)]
    page = lead.get("/review/evidence").text
    assert "attacker-1" in section(page, "pending-ncmec")
    assert "Report to NCMEC" in page

    response = lead.post(
        "/review/evidence/ncmec", site_id=str(items[0].site_id), uploader="attacker-1"
    )
    assert response.status_code == 303, response.text
    (report,) = all_reports(runtime)
    assert (report.authority, report.status, report.uploader_id) == (
        "ncmec",
        "pending",
        "attacker-1",
    )
    assert report.sent_at is None, "nothing was sent: there is no worker"
    page = lead.get(response.headers["location"]).text
    assert f"NCMEC report {report.id} queued" in page
    assert "Nothing waiting." in section(page, "pending-ncmec")
    assert "attacker-1" in section(page, "pending-nca"), "an NCA report is a separate matter"
    row = page.split(f'id="report-{report.id}"', 1)[1].split("</tr>", 1)[0]
    assert "pending" in row
    assert '<td class="num">2</td>' in row, "one report covers both items"
    for item in items:
        actions = custody_actions(runtime, item.id)
        assert ("reported", "user:carol") in actions


def test_queueing_a_cybertipline_report_when_ncmec_is_off_is_refused_with_a_reason(
    runtime: Runtime, lead: Person, site: Site
) -> None:
    item = site.block(seed=1)
    response = lead.post("/review/evidence/ncmec", site_id=str(item.site_id), uploader="attacker-1")
    assert 400 <= response.status_code < 500, response.text
    assert "NCMEC" in error_message(response) or "ncmec" in error_message(response)
    assert all_reports(runtime) == []


def test_an_nca_package_is_prepared_and_both_files_download(
    runtime: Runtime, lead: Person, site: Site
) -> None:
    items = [site.block(seed=seed) for seed in (1, 2)]
    response = lead.post(
        "/review/evidence/nca", site_id=str(items[0].site_id), uploader="attacker-1"
    )
    assert response.status_code == 303, response.text
    (report,) = all_reports(runtime)
    assert (report.authority, report.status) == ("nca", "prepared")
    page = lead.get(response.headers["location"]).text
    offered = section(page, "prepared")
    json_url = f"/review/evidence/reports/{report.id}/nca.json"
    html_url = f"/review/evidence/reports/{report.id}/nca.html"
    assert f'href="{json_url}"' in offered
    assert f'href="{html_url}"' in offered
    assert "Nothing waiting." in section(page, "pending-nca")
    assert f'id="report-{report.id}"' in section(page, "reports")

    document = lead.get(json_url)
    assert document.status_code == 200, document.text
    assert document.headers["content-type"].startswith("application/json")
    assert document.headers["content-disposition"].startswith("attachment")
    package = json.loads(document.text)
    for item in items:
        assert item.sha256 in document.text
        assert item.md5 in document.text
    assert "203.0.113.7" in document.text
    assert "51234" in document.text
    assert package, "the package is a JSON document"

    summary = lead.get(html_url)
    assert summary.status_code == 200
    assert summary.headers["content-type"].startswith("text/html")
    assert summary.headers["content-disposition"].startswith("attachment")
    assert items[0].sha256 in summary.text
    with runtime.database.session() as session:
        downloads = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.nca.downloaded")
        ).all()
    assert [(event.actor, event.details["file"]) for event in downloads] == [
        ("user:carol", "json"),
        ("user:carol", "html"),
    ]

    again = lead.post("/review/evidence/nca", site_id=str(items[0].site_id), uploader="attacker-1")
    assert 400 <= again.status_code < 500, "nothing is left to report"
    assert error_message(again)
    assert len(all_reports(runtime)) == 1


def test_uploads_without_an_uploader_id_are_reported_together(
    runtime: Runtime, lead: Person, site: Site
) -> None:
    data = known_image(9)
    add_hashes(site.client, site.headers, "known", [hashlib.sha256(data).hexdigest()])
    assert screen(site.client, site.headers, data, {"ip": "198.51.100.4"}).status_code == 200
    waiting = section(lead.get("/review/evidence").text, "pending-nca")
    assert "<em>no uploader id</em>" in waiting
    assert 'name="uploader" value=""' in waiting
    site_ids = re.findall(r'name="site_id" value="(\d+)"', waiting)
    response = lead.post("/review/evidence/nca", site_id=site_ids[0], uploader="")
    assert response.status_code == 303, response.text
    (report,) = all_reports(runtime)
    assert (report.authority, report.uploader_id) == ("nca", None)
    assert "Nothing waiting." in section(lead.get("/review/evidence").text, "pending-nca")


def test_downloading_a_package_that_does_not_exist_is_not_found(lead: Person) -> None:
    for url in ("/review/evidence/reports/4242/nca.json", "/review/evidence/reports/0/nca.html"):
        response = lead.get(url)
        assert response.status_code in (404, 422), url
        assert "attachment" not in response.headers.get("content-disposition", "")


# --- legal holds ---------------------------------------------------------------------------------


def test_a_hold_on_an_uploader_keeps_their_items_until_released_with_a_reason(
    runtime: Runtime, lead: Person, site: Site
) -> None:
    theirs = [site.block(seed=seed, uploader="attacker-1") for seed in (1, 2)]
    other = site.block(seed=3, uploader="attacker-2")
    response = lead.post(
        "/review/evidence/holds",
        site_id=str(theirs[0].site_id),
        case_name="Met Police 01/2345/26",
        reason="preservation request from the investigating officer",
        uploader="attacker-1",
    )
    assert response.status_code == 303, response.text
    with runtime.database.session() as session:
        (hold,) = retention.active_holds(session)
        held = {item.id for item in retention.hold_items(session, hold.id)}
    assert held == {item.id for item in theirs}
    assert hold.placed_by == "user:carol"
    for item in theirs:
        assert ("hold_placed", "user:carol") in custody_actions(runtime, item.id)
    assert [action for action, _ in custody_actions(runtime, other.id)] == ["stored"]

    page = lead.get(response.headers["location"]).text
    assert f"hold {hold.id} placed on 2 items" in page
    row = page.split(f'id="hold-{hold.id}"', 1)[1].split("</tr>", 1)[0]
    assert "Met Police 01/2345/26" in row
    assert "preservation request from the investigating officer" in row
    assert "user:carol" in row
    assert "<td>2<br>" in row

    blank = lead.post(f"/review/evidence/holds/{hold.id}/release", reason="   ")
    assert blank.status_code == 400
    assert "reason" in error_message(blank)
    released = lead.post(f"/review/evidence/holds/{hold.id}/release", reason="case closed")
    assert released.status_code == 303, released.text
    with runtime.database.session() as session:
        assert retention.active_holds(session) == []
        row_after = session.get(LegalHold, hold.id)
        assert row_after is not None
        assert (row_after.released_by, row_after.release_reason) == ("user:carol", "case closed")
    for item in theirs:
        assert custody_actions(runtime, item.id)[-1] == ("hold_released", "user:carol")
    page = lead.get(released.headers["location"]).text
    assert f'id="hold-{hold.id}"' not in page
    assert "No active holds." in page

    twice = lead.post(f"/review/evidence/holds/{hold.id}/release", reason="again")
    assert twice.status_code == 409
    assert "already released" in error_message(twice)


def test_a_hold_on_listed_item_ids(runtime: Runtime, lead: Person, site: Site) -> None:
    items = [site.block(seed=seed, uploader=f"u{seed}") for seed in (1, 2, 3)]
    response = lead.post(
        "/review/evidence/holds",
        site_id=str(items[0].site_id),
        case_name="case 7",
        reason="a court order",
        item_ids=f"{items[0].id}\n{items[2].id}, {items[0].id}",
    )
    assert response.status_code == 303, response.text
    with runtime.database.session() as session:
        (hold,) = retention.active_holds(session)
        assert {item.id for item in retention.hold_items(session, hold.id)} == {
            items[0].id,
            items[2].id,
        }


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        ({"item_ids": "not-an-item"}, 404, "no evidence item not-an-item"),
        ({"uploader": "nobody"}, 404, "has no evidence"),
        ({}, 400, "name the items to hold"),
        ({"case_name": " ", "uploader": "attacker-1"}, 400, "case name"),
        ({"reason": " ", "uploader": "attacker-1"}, 400, "reason"),
        ({"reason": "", "uploader": "attacker-1"}, 422, "reason"),
        ({"site_id": "4242", "uploader": "attacker-1"}, 404, "no site with id 4242"),
        ({"site_id": "one", "uploader": "attacker-1"}, 422, "site_id"),
        ({"reason": "a\x00b", "uploader": "attacker-1"}, 422, "reason"),
    ],
    ids=[
        "unknown item",
        "unknown uploader",
        "nothing named",
        "no case",
        "blank reason",
        "no reason",
        "no site",
        "site not a number",
        "NUL",
    ],
)
def test_a_hold_form_with_bad_input_says_what_is_wrong_and_holds_nothing(
    runtime: Runtime,
    lead: Person,
    site: Site,
    form: dict[str, str],
    status: int,
    says: str,
) -> None:
    item = site.block(seed=1)
    fields = {"site_id": str(item.site_id), "case_name": "case", "reason": "why", **form}
    response = lead.post("/review/evidence/holds", **fields)
    assert response.status_code == status, response.text
    assert says in error_message(response)
    with runtime.database.session() as session:
        assert retention.active_holds(session) == []


# --- an item's page ------------------------------------------------------------------------------


def test_the_item_page_shows_hashes_and_capture_and_never_the_image(
    runtime: Runtime, lead: Person, site: Site
) -> None:
    item = site.block(seed=1)
    response = lead.get(f"/review/evidence/items/{item.id}")
    assert response.status_code == 200, response.text
    page = response.text
    for value in (item.sha256, item.md5, item.sha1, item.pdq[0]["hash"]):
        assert value in page
    assert "203.0.113.7:51234" in page
    assert "Mozilla/5.0 (stand-in)" in page
    assert "attacker-1@example.test" in page
    assert "Stand-in Camera Co" in page, "the EXIF as received"
    assert "known" in section(page, "matches"), "the bank it matched"
    assert item.retain_until.strftime("%Y-%m-%d") in page
    for trace in (*_IMAGE_TRACES, *_IMAGE_TRACES_BASE64):
        assert trace not in response.content
    assert "/preview" not in page
    assert "/reveal" not in page


def test_opening_an_item_is_written_into_its_chain_of_custody(
    runtime: Runtime, lead: Person, site: Site
) -> None:
    item = site.block(seed=1)
    assert [action for action, _ in custody_actions(runtime, item.id)] == ["stored"]
    page = lead.get(f"/review/evidence/items/{item.id}").text
    assert custody_actions(runtime, item.id)[-1] == ("viewed", "user:carol")
    assert "custody-viewed" in section(page, "custody"), "the page lists its own viewing"
    lead.get(f"/review/evidence/items/{item.id}")
    assert [action for action, _ in custody_actions(runtime, item.id)].count("viewed") == 2
    with runtime.database.session() as session:
        viewed = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "evidence.viewed")
        ).all()
    assert [(event.actor, event.subject) for event in viewed] == [("user:carol", item.id)] * 2


def test_an_unknown_item_is_not_found_and_records_nothing(lead: Person, runtime: Runtime) -> None:
    response = lead.get("/review/evidence/items/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert "no evidence item" in error_message(response)
    with runtime.database.session() as session:
        assert custody.head(session)[0] == 0


# --- hostile input and forged forms --------------------------------------------------------------


def test_hostile_names_are_shown_as_text(runtime: Runtime, lead: Person, site: Site) -> None:
    item = site.block(seed=1, screen_name=HOSTILE, display_name=HOSTILE)
    lead.post(
        "/review/evidence/holds",
        site_id=str(item.site_id),
        case_name=HOSTILE,
        reason=HOSTILE,
        uploader="attacker-1",
    )
    prepared = lead.post("/review/evidence/nca", site_id=str(item.site_id), uploader="attacker-1")
    assert prepared.status_code == 303, prepared.text
    (report,) = all_reports(runtime)
    for url in (
        "/review/evidence",
        f"/review/evidence/items/{item.id}",
        f"/review/evidence/reports/{report.id}/nca.html",  # opened from disk, outside our CSP
    ):
        page = lead.get(url).text
        assert HOSTILE not in page, url
        assert html.escape(HOSTILE) in page, url


def test_evidence_forms_without_their_csrf_token_change_nothing(
    runtime: Runtime, lead: Person, site: Site
) -> None:
    item = site.block(seed=1)
    with runtime.database.write_session() as session:
        hold = retention.place_hold(
            session,
            site_id=item.site_id,
            case_name="case",
            reason="kept",
            item_ids=[item.id],
            actor="test",
            now=runtime.clock.now(),
        )
        hold_id = hold.id
    forms: dict[str, dict[str, str]] = {
        "/review/evidence/nca": {"site_id": str(item.site_id), "uploader": "attacker-1"},
        "/review/evidence/ncmec": {"site_id": str(item.site_id), "uploader": "attacker-1"},
        "/review/evidence/holds": {
            "site_id": str(item.site_id),
            "case_name": "forged",
            "reason": "forged",
            "uploader": "attacker-1",
        },
        f"/review/evidence/holds/{hold_id}/release": {"reason": "forged"},
    }
    for url, form in forms.items():
        for token in ({}, {"csrf_token": "not-the-token"}):
            response = lead.client.post(url, data={**form, **token}, follow_redirects=False)
            assert response.status_code == 403, url
            assert "did not come from Vigil" in error_message(response)
    assert all_reports(runtime) == []
    with runtime.database.session() as session:
        assert [row.id for row in retention.active_holds(session)] == [hold_id]


# --- in a real browser ---------------------------------------------------------------------------


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    with live_server(create_app(runtime)) as (host, port):
        yield f"http://{host}:{port}"


def test_in_the_browser_a_child_safety_lead_places_a_legal_hold(
    chromium: Any,  # noqa: F811
    server: str,
    runtime: Runtime,
    site: Site,
    request: pytest.FixtureRequest,
) -> None:
    database = request.node.callspec.params.get("make_settings", "sqlite")
    items = [site.block(seed=seed) for seed in (1, 2)]
    add_user(runtime, "carol", UserRole.CHILD_SAFETY)

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/review/evidence")
    page.fill("input[name=name]", "carol")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/evidence")
    assert "attacker-1" in page.inner_text("#pending-nca")

    page.click("#pending-nca a:has-text('Hold')")
    page.wait_for_url("**/review/evidence?*")
    assert page.input_value("#place-hold input[name=uploader]") == "attacker-1"
    page.fill("#place-hold input[name=case_name]", "Met Police 01/2345/26")
    page.fill("#place-hold input[name=reason]", "preservation request from the officer")
    page.click("#place-hold button[type=submit]")
    page.wait_for_url("**/review/evidence?done=*")
    assert "placed on 2 items" in page.inner_text("#done")
    row = page.locator("table.legal-holds tr.legal-hold")
    assert row.count() == 1
    assert "Met Police 01/2345/26" in row.inner_text()
    assert "user:carol" in row.inner_text()
    assert page.locator("img").count() == 0
    page.screenshot(path=_artefact(f"review-evidence-{database}.png"), full_page=True)

    page.click(f"a[href='/review/evidence/items/{items[0].id}'] >> nth=0")
    page.wait_for_url(f"**/review/evidence/items/{items[0].id}")
    assert items[0].sha256 in page.inner_text("#hashes")
    assert "Met Police 01/2345/26" in page.inner_text("#item-holds")
    assert page.locator("img").count() == 0
    page.screenshot(path=_artefact(f"review-evidence-item-{database}.png"), full_page=True)
    context.close()

    with runtime.database.session() as session:
        (hold,) = retention.active_holds(session)
        assert {item.id for item in retention.hold_items(session, hold.id)} == {
            item.id for item in items
        }
