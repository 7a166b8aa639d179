"""The lockdown page and incident acknowledgement, in the test client and in a real browser.

Who sees and may change what; CSRF on the app's forms; and the acknowledgement link a page
carries, which works without signing in, changes nothing when opened, and refuses a wrong token
without saying anything about the incident.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_lockdown_api import audit_events
from tests.live import live_server
from tests.review.conftest import PASSWORD, Person, add_user, signed_in
from tests.review.test_browser import _artefact, chromium  # noqa: F401 - the browser, shared
from vigil.actions import incidents
from vigil.actions.incidents import IncidentKind
from vigil.api import create_app
from vigil.lockdown import control
from vigil.lockdown.levels import LevelSource
from vigil.review.accounts import UserRole
from vigil.review.web import SECURITY_HEADERS
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.store.models import Incident, LockdownState
from vigil.store.sites import get_or_create_site, get_site
from vigil.store.types import utcnow

Browsers = Callable[[], TestClient]
TITLE = "default: lockdown raised to level 2 (every image is held for review)"
_LEVEL = re.compile(
    r'id="site-default">\s*<h2>default:\s*<span class="level-badge level-\d" data-level="(\d)"'
)


def open_incident(runtime: Runtime, title: str = TITLE) -> tuple[int, str]:
    """An incident on the default site, opened the way the monitor opens one: (id, token)."""
    ensure_bootstrap_key(runtime.database)
    with runtime.database.write_session() as session:
        site = get_or_create_site(session, "default")
        incident, new = incidents.raise_incident(
            session,
            runtime.settings.paging,
            site,
            IncidentKind.LOCKDOWN,
            title,
            {"level": 2},
            utcnow(),
            scope="2",
        )
        assert new
        return incident.id, incident.ack_token


def _incident(runtime: Runtime, incident_id: int) -> Incident:
    with runtime.database.session() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident


def _level(runtime: Runtime, site: str = "default") -> tuple[int, LevelSource]:
    with runtime.database.session() as session:
        found = get_site(session, site)
        conditions = control.conditions_for(session, runtime.settings, found.id, utcnow())
        return int(conditions.level), conditions.source


def _shown_level(page: str) -> int:
    found = _LEVEL.search(page)
    assert found is not None, "the page shows no level for the default site"
    return int(found.group(1))


@pytest.fixture
def admin(runtime: Runtime, app_client: Browsers) -> Person:
    ensure_bootstrap_key(runtime.database)
    return signed_in(runtime, app_client, "alice", UserRole.ADMIN)


@pytest.fixture
def link(runtime: Runtime) -> tuple[int, str]:
    return open_incident(runtime)


def _link_url(incident_id: int, token: str) -> str:
    return f"/review/incidents/{incident_id}/acknowledge?token={token}"


# --- the lockdown page -------------------------------------------------------------------------


def test_a_viewer_sees_each_sites_level_and_rules_but_cannot_change_anything(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, _ = link
    viewer = signed_in(runtime, app_client, "victor", UserRole.VIEWER)
    page = viewer.get("/review/lockdown")
    assert page.status_code == 200, page.text
    assert _shown_level(page.text) == 0
    assert "normal screening" in page.text
    assert "<td>bank_match</td>" in page.text, "the rules are listed with their measures"
    assert html.escape(TITLE) in page.text, "the open incident is listed"
    assert 'action="/review/lockdown/set"' not in page.text
    assert 'action="/review/lockdown/clear"' not in page.text
    assert f'action="/review/incidents/{incident_id}/acknowledge"' not in page.text
    assert 'href="/review/lockdown"' in viewer.get("/review/queue").text, "the nav links to it"

    refused = viewer.post(
        "/review/lockdown/set", site="default", level="3", for_minutes="60", reason="no"
    )
    assert refused.status_code == 403
    acknowledged = viewer.post(f"/review/incidents/{incident_id}/acknowledge")
    assert acknowledged.status_code == 403
    assert _level(runtime) == (0, LevelSource.NONE)
    assert _incident(runtime, incident_id).acknowledged_at is None


def test_an_admin_sets_a_level_from_the_page_and_clears_it(runtime: Runtime, admin: Person) -> None:
    page = admin.get("/review/lockdown").text
    assert 'action="/review/lockdown/set"' in page
    assert "lockdown-banner" not in page

    response = admin.post(
        "/review/lockdown/set", site="default", level="2", for_minutes="120", reason="spam wave"
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/review/lockdown?done=")
    assert _level(runtime) == (2, LevelSource.MANUAL)
    with runtime.database.session() as session:
        state = session.get(LockdownState, get_site(session, "default").id)
        assert state is not None
        assert (state.manual_by, state.manual_reason) == ("user:alice", "spam wave")
        assert state.manual_until is not None
        assert state.manual_until - state.updated_at == timedelta(hours=2)

    page = admin.get(response.headers["location"]).text
    assert _shown_level(page) == 2
    assert "every image is held for review" in page
    assert "set by hand" in page
    assert "spam wave" in page
    history = page.split('id="lockdown-history"', 1)[1]
    assert "lockdown.set" in history
    assert "user:alice" in history
    banner = admin.get("/review/queue").text
    assert 'id="lockdown-banner"' in banner
    assert "default at level 2" in banner

    cleared = admin.post("/review/lockdown/clear", site="default", reason="wave is over")
    assert cleared.status_code == 303, cleared.text
    assert _level(runtime) == (0, LevelSource.NONE)
    page = admin.get("/review/lockdown").text
    assert _shown_level(page) == 0
    assert "lockdown.cleared" in page.split('id="lockdown-history"', 1)[1]
    assert "lockdown-banner" not in admin.get("/review/queue").text
    assert [event.action for event in audit_events(runtime, "lockdown.")] == [
        "lockdown.set",
        "lockdown.cleared",
    ]


def test_a_form_without_its_csrf_token_changes_nothing(runtime: Runtime, admin: Person) -> None:
    form = {"site": "default", "level": "3", "for_minutes": "60", "reason": "forged"}
    for token in ({}, {"csrf_token": "not-the-token"}):
        response = admin.client.post(
            "/review/lockdown/set", data={**form, **token}, follow_redirects=False
        )
        assert response.status_code == 403, response.text
        cleared = admin.client.post(
            "/review/lockdown/clear",
            data={"site": "default", "reason": "forged", **token},
            follow_redirects=False,
        )
        assert cleared.status_code == 403
    assert _level(runtime) == (0, LevelSource.NONE)
    assert audit_events(runtime, "lockdown.") == []


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"level": "4"}, 422),
        ({"level": "-1"}, 422),
        ({"level": "two"}, 422),
        ({"for_minutes": "0"}, 422),
        ({"for_minutes": "100000"}, 422),
        ({"reason": "   "}, 400),
        ({"reason": "a\x00b"}, 422),
        ({"reason": "x" * 2001}, 422),
        ({"site": "nowhere"}, 404),
        ({"site": ""}, 422),
    ],
    ids=[
        "level 4",
        "level -1",
        "level as a word",
        "no time",
        "too long",
        "blank reason",
        "NUL",
        "reason too long",
        "unknown site",
        "no site",
    ],
)
def test_bad_form_input_is_a_client_error(
    runtime: Runtime, admin: Person, form: dict[str, str], status: int
) -> None:
    fields = {"site": "default", "level": "2", "for_minutes": "60", "reason": "r", **form}
    response = admin.post("/review/lockdown/set", **fields)
    assert response.status_code == status, response.text
    assert 'class="error"' in response.text, "an error page says what was wrong"
    assert _level(runtime) == (0, LevelSource.NONE)


def test_a_moderator_acknowledges_and_resolves_from_the_page(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, _ = link
    moderator = signed_in(runtime, app_client, "mo", UserRole.MODERATOR)
    page = moderator.get("/review/lockdown").text
    assert f'action="/review/incidents/{incident_id}/acknowledge"' in page
    assert 'action="/review/lockdown/set"' not in page, "setting levels is for admins"

    forged = moderator.client.post(
        f"/review/incidents/{incident_id}/acknowledge", follow_redirects=False
    )
    assert forged.status_code == 403
    assert _incident(runtime, incident_id).acknowledged_at is None

    response = moderator.post(f"/review/incidents/{incident_id}/acknowledge")
    assert response.status_code == 303, response.text
    assert _incident(runtime, incident_id).acknowledged_by == "user:mo"
    page = moderator.get(response.headers["location"]).text
    assert "by user:mo" in page
    assert moderator.post(f"/review/incidents/{incident_id}/acknowledge").status_code == 409

    resolved = moderator.post(f"/review/incidents/{incident_id}/resolve", reason="false alarm")
    assert resolved.status_code == 303, resolved.text
    incident = _incident(runtime, incident_id)
    assert (incident.resolved_by, incident.open_key) == ("user:mo", None)
    (event,) = audit_events(runtime, "incident.resolved")
    assert event.details["why"] == "false alarm"
    assert moderator.post(f"/review/incidents/{incident_id}/resolve").status_code == 409
    assert moderator.post("/review/incidents/999999/resolve").status_code == 404


# --- the acknowledgement link ------------------------------------------------------------------


def test_opening_the_link_shows_the_incident_and_changes_nothing(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, token = link
    paged = _incident(runtime, incident_id)
    phone = app_client()  # nobody signed in
    for _ in range(2):  # a mail scanner, then the person
        page = phone.get(_link_url(incident_id, token))
        assert page.status_code == 200, page.text
    assert html.escape(TITLE) in page.text
    assert 'id="acknowledge-form"' in page.text
    assert f'name="token" value="{token}"' in page.text
    assert "csrf_token" not in page.text
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value, name
    incident = _incident(runtime, incident_id)
    assert (incident.acknowledged_at, incident.acknowledged_by) == (None, None)
    assert (incident.tier, incident.next_tier_at) == (paged.tier, paged.next_tier_at)
    assert audit_events(runtime, "incident.acknowledged") == []


def test_the_links_form_acknowledges_with_the_token_alone(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, token = link
    phone = app_client()
    url = f"/review/incidents/{incident_id}/acknowledge"
    response = phone.post(url, data={"token": token, "name": "Dana"})
    assert response.status_code == 200, response.text
    assert "Acknowledged by link:Dana" in response.text
    incident = _incident(runtime, incident_id)
    assert incident.acknowledged_by == "link:Dana"
    assert incident.next_tier_at is None, "nobody further is paged"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name

    later = phone.get(_link_url(incident_id, token))
    assert "Already acknowledged by link:Dana" in later.text
    assert 'id="acknowledge-form"' not in later.text
    again = phone.post(url, data={"token": token, "name": "Eve"})
    assert again.status_code == 200
    assert "Already acknowledged by link:Dana" in again.text
    assert _incident(runtime, incident_id).acknowledged_by == "link:Dana"
    (event,) = audit_events(runtime, "incident.acknowledged")
    assert event.actor == "link:Dana"


def test_looking_up_a_non_ascii_token_finds_nothing(
    runtime: Runtime, link: tuple[int, str]
) -> None:
    incident_id, token = link
    with runtime.database.session() as session:
        assert incidents.find_by_token(session, incident_id, "é" * len(token)) is None


def test_a_typed_name_is_one_line_in_the_audit_log(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, token = link
    response = app_client().post(
        f"/review/incidents/{incident_id}/acknowledge",
        data={"token": token, "name": "  Dana\n  Smith "},
    )
    assert response.status_code == 200, response.text
    assert _incident(runtime, incident_id).acknowledged_by == "link:Dana Smith"


def test_without_a_name_the_link_acknowledges_as_on_call(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, token = link
    response = app_client().post(
        f"/review/incidents/{incident_id}/acknowledge", data={"token": token}
    )
    assert response.status_code == 200, response.text
    assert _incident(runtime, incident_id).acknowledged_by == "link:on-call"


def test_a_signed_in_person_acknowledges_under_their_own_name(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, token = link
    moderator = signed_in(runtime, app_client, "mo", UserRole.MODERATOR)
    page = moderator.get(_link_url(incident_id, token)).text
    assert "You acknowledge as mo" in page
    response = moderator.client.post(
        f"/review/incidents/{incident_id}/acknowledge",
        data={"token": token, "csrf_token": moderator.csrf},
    )
    assert response.status_code == 200, response.text
    assert _incident(runtime, incident_id).acknowledged_by == "user:mo"


def test_a_wrong_token_finds_nothing_and_tells_nothing(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, token = link
    phone = app_client()
    wrong = phone.get(_link_url(incident_id, token[:-1] + ("A" if token[-1] != "A" else "B")))
    missing = phone.get(f"/review/incidents/{incident_id}/acknowledge")
    elsewhere = phone.get(_link_url(incident_id + 1000, token))
    empty = phone.get(_link_url(incident_id, ""))
    huge = phone.get(_link_url(incident_id, "x" * 5000))
    foreign = phone.get(_link_url(incident_id, "é" * len(token)))
    for response in (wrong, missing, elsewhere, empty, huge, foreign):
        assert response.status_code == 404, response.text
        assert TITLE not in response.text
        assert "lockdown raised" not in response.text
        assert (
            response.headers["Content-Security-Policy"]
            == SECURITY_HEADERS["Content-Security-Policy"]
        )
    assert wrong.text == elsewhere.text, "a wrong token and an unknown incident look the same"

    url = f"/review/incidents/{incident_id}/acknowledge"
    for form in ({"token": "nope", "name": "Mallory"}, {"token": ""}, {"token": "é" * len(token)}):
        refused = phone.post(url, data=form)
        assert refused.status_code == 404
    not_signed_in = phone.post(url, data={"name": "Mallory"}, follow_redirects=False)
    assert not_signed_in.status_code == 303, "without a token it is the app's form: sign in"
    assert "/review/login" in not_signed_in.headers["location"]
    assert _incident(runtime, incident_id).acknowledged_at is None


def test_a_resolved_incidents_link_has_nothing_to_acknowledge(
    runtime: Runtime, app_client: Browsers, link: tuple[int, str]
) -> None:
    incident_id, token = link
    with runtime.database.write_session() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        incidents.resolve(session, runtime.settings.paging, incident, "vigil", utcnow(), why="over")
    page = app_client().get(_link_url(incident_id, token))
    assert page.status_code == 200
    assert "This incident is resolved" in page.text
    assert 'id="acknowledge-form"' not in page.text
    posted = app_client().post(
        f"/review/incidents/{incident_id}/acknowledge", data={"token": token}
    )
    assert "This incident is resolved" in posted.text
    assert _incident(runtime, incident_id).acknowledged_at is None


# --- in a real browser -------------------------------------------------------------------------


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    with live_server(create_app(runtime)) as (host, port):
        yield f"http://{host}:{port}"


def test_in_the_browser_an_admin_sets_level_2_and_on_call_acknowledges_from_the_link(
    chromium: Any,  # noqa: F811
    server: str,
    runtime: Runtime,
    request: pytest.FixtureRequest,
) -> None:
    database = request.node.callspec.params.get("make_settings", "sqlite")
    ensure_bootstrap_key(runtime.database)
    add_user(runtime, "alice", UserRole.ADMIN)
    incident_id, token = open_incident(runtime)

    admin = chromium.new_context()
    page = admin.new_page()
    page.goto(f"{server}/review/lockdown")
    page.fill("input[name=name]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/lockdown")
    assert page.get_attribute("#site-default .level-badge", "data-level") == "0"
    page.select_option("#set-default select[name=level]", "2")
    page.fill("#set-default input[name=reason]", "spam wave from new accounts")
    page.click("#set-default button[type=submit]")
    page.wait_for_url("**/review/lockdown?done=*")
    assert page.get_attribute("#site-default .level-badge", "data-level") == "2"
    assert "every image is held for review" in page.inner_text("#site-default h2")
    assert "spam wave from new accounts" in page.inner_text("#site-default .manual")
    assert "default at level 2" in page.inner_text("#lockdown-banner")
    page.screenshot(path=_artefact(f"review-lockdown-{database}.png"), full_page=True)
    admin.close()
    assert _level(runtime) == (2, LevelSource.MANUAL)

    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    page.goto(f"{server}{_link_url(incident_id, token)}")
    assert TITLE in page.inner_text("h1")
    assert _incident(runtime, incident_id).acknowledged_at is None, "opening changes nothing"
    page.fill("input[name=name]", "Dana")
    page.click("#acknowledge")
    page.wait_for_selector("#ack-result")
    assert "Acknowledged by link:Dana" in page.inner_text("#ack-result")
    page.screenshot(path=_artefact(f"review-acknowledged-{database}.png"), full_page=True)
    phone.close()
    assert _incident(runtime, incident_id).acknowledged_by == "link:Dana"
