"""The lockdown and incident API: who may read and change what, bad input, and what a level
set by hand does to screening, on a clock the tests move (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.api.conftest import add_hashes, create_bank, screen, site_key
from tests.images import encode, make_photo
from tests.receiver import webhook_receiver
from vigil.actions.webhooks import verify_signature
from vigil.api import create_app
from vigil.clock import ManualClock
from vigil.config import Settings
from vigil.lockdown.monitor import LockdownMonitor
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.store.models import AuditEvent, Incident, LockdownState, Page
from vigil.store.sites import Role
from vigil.workers.webhooks import WebhookDeliverer

# A Tuesday noon in the past: the webhook deliverer reads the wall clock, so events written at
# this time are due at once.
START = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
LONG_AGO = (START - timedelta(days=400)).isoformat()
TRUSTED = {"uploader_id": "old-friend", "trust_level": "trusted", "account_created_at": LONG_AGO}
NEWCOMER = {"uploader_id": "newcomer", "trust_level": "new"}
# Pages go nowhere in these tests: only that they are written (or not) matters.
PAGING = {
    "channels": [{"name": "oncall", "kind": "webhook", "url": "http://127.0.0.1:9/page"}],
    "tiers": [
        {"channels": ["oncall"], "after_minutes": 0},
        {"channels": ["oncall"], "after_minutes": 10},
    ],
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    # No embedded worker: the tests run the monitor and the deliverer themselves, when they mean to.
    return make_settings(workers={"embedded": False}, paging=PAGING)


@pytest.fixture
def runtime(settings: Settings, clock: ManualClock) -> Iterator[Runtime]:
    runtime = Runtime.open(settings, clock=clock)
    yield runtime
    runtime.close()


@pytest.fixture
def admin(runtime: Runtime) -> dict[str, str]:
    key = ensure_bootstrap_key(runtime.database)
    assert key is not None
    return {"Authorization": f"Bearer {key}"}


def _photo(seed: int) -> bytes:
    return encode(make_photo(320, 240, seed=seed), "JPEG")


def _set(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return client.put("/v1/lockdown", headers=headers, json={"reason": "testing", **body})


def audit_events(runtime: Runtime, prefix: str) -> list[AuditEvent]:
    """The audit entries whose action starts with ``prefix``, oldest first."""
    with runtime.database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action.startswith(prefix))
                .order_by(AuditEvent.id)
            )
        )


def _decide(client: TestClient, headers: dict[str, str], seed: int, who: dict[str, Any]) -> Any:
    response = screen(client, headers, _photo(seed), who)
    assert response.status_code == 200, response.text
    return response.json()


# --- who may do what ---------------------------------------------------------------------------


def test_a_screen_key_reads_its_sites_lockdown_but_cannot_change_it(
    client: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    _, screen_key = site_key(runtime, "default", Role.SCREEN)
    _, moderator_key = site_key(runtime, "default", Role.MODERATOR)

    status = client.get("/v1/lockdown", headers=screen_key)
    assert status.status_code == 200, status.text
    body = status.json()
    assert (body["site"], body["level"], body["source"]) == ("default", 0, "none")
    assert body["description"] == "normal screening"
    assert body["uploads_paused"] is False
    assert body["manual"] is None
    assert body["automatic"] == {"level": 0, "cause": {}}
    assert body["rules"], "every configured rule is listed with its measure"
    assert all(rule["measured"] == 0 and rule["firing"] is False for rule in body["rules"])

    for headers in (screen_key, moderator_key):
        assert _set(client, headers, level=2).status_code == 403
        refused = client.delete("/v1/lockdown", headers=headers, params={"reason": "x"})
        assert refused.status_code == 403
    assert client.get("/v1/lockdown").status_code == 401
    assert client.get("/v1/lockdown", headers=screen_key).json()["level"] == 0
    assert audit_events(runtime, "lockdown.") == []


def test_an_admin_sets_a_level_for_a_while_and_clears_it(
    client: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    response = _set(client, admin, level=2, for_minutes=90, reason="spam wave from new accounts")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["level"], body["source"], body["changed"]) == (2, "manual", True)
    assert body["description"] == "every image is held for review"
    manual = body["manual"]
    assert manual["level"] == 2
    assert manual["reason"] == "spam wave from new accounts"
    assert manual["by"].startswith("key:")
    assert "(default)" in manual["by"]
    assert datetime.fromisoformat(manual["until"]) == START + timedelta(minutes=90)

    status = client.get("/v1/lockdown", headers=admin).json()
    assert (status["level"], status["manual"]["level"]) == (2, 2)

    cleared = client.request("DELETE", "/v1/lockdown", headers=admin, json={"reason": "it is over"})
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["level"], cleared.json()["source"]) == (0, "none")
    assert cleared.json()["manual"] is None

    events = audit_events(runtime, "lockdown.")
    assert [event.action for event in events] == ["lockdown.set", "lockdown.cleared"]
    set_event, clear_event = events
    assert set_event.actor == manual["by"]
    assert set_event.subject == "site/default"
    assert set_event.details["reason"] == "spam wave from new accounts"
    assert set_event.details["level"] == 2
    assert clear_event.details["reason"] == "it is over"
    assert clear_event.details["manual_level"] == 2


def test_the_default_duration_comes_from_the_settings_and_the_reason_may_be_a_query(
    client: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    body = _set(client, admin, level=1).json()
    hours = runtime.settings.lockdown.manual_default_hours
    assert datetime.fromisoformat(body["manual"]["until"]) == START + timedelta(hours=hours)
    cleared = client.delete("/v1/lockdown", headers=admin, params={"reason": "false alarm"})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["level"] == 0
    assert audit_events(runtime, "lockdown.cleared")[0].details["reason"] == "false alarm"


def test_only_an_admin_key_acts_on_another_site(
    client: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    _, other_screen = site_key(runtime, "other", Role.SCREEN)
    assert _set(client, admin, level=3, site="other").json()["site"] == "other"
    assert client.get("/v1/lockdown", headers=other_screen).json()["level"] == 3
    assert client.get("/v1/lockdown", headers=admin).json()["level"] == 0, "default is untouched"
    assert client.get("/v1/lockdown", headers=admin, params={"site": "other"}).json()["level"] == 3

    refused = client.get("/v1/lockdown", headers=other_screen, params={"site": "default"})
    assert refused.status_code == 403
    assert "admin" in refused.json()["error"]["message"]
    # Its own name is no trespass.
    own = client.get("/v1/lockdown", headers=other_screen, params={"site": "other"})
    assert own.status_code == 200
    missing = _set(client, admin, level=1, site="nowhere")
    assert missing.status_code == 404
    assert "nowhere" in missing.json()["error"]["message"]


# --- bad input ---------------------------------------------------------------------------------

BAD_SETS: dict[str, tuple[Any, str]] = {
    "level 4": ({"level": 4, "reason": "r"}, "level"),
    "level -1": ({"level": -1, "reason": "r"}, "level"),
    "level as text": ({"level": "2", "reason": "r"}, "level"),
    "level as a fraction": ({"level": 1.5, "reason": "r"}, "level"),
    "level as a boolean": ({"level": True, "reason": "r"}, "level"),
    "no level": ({"reason": "r"}, "level"),
    "no reason": ({"level": 2}, "reason"),
    "empty reason": ({"level": 2, "reason": ""}, "reason"),
    "blank reason": ({"level": 2, "reason": "   "}, "reason"),
    "NUL in the reason": ({"level": 2, "reason": "a\x00b"}, "reason"),
    "reason too long": ({"level": 2, "reason": "x" * 2001}, "reason"),
    "reason as a number": ({"level": 2, "reason": 7}, "reason"),
    "negative minutes": ({"level": 2, "reason": "r", "for_minutes": -5}, "for_minutes"),
    "zero minutes": ({"level": 2, "reason": "r", "for_minutes": 0}, "for_minutes"),
    "a year of minutes": ({"level": 2, "reason": "r", "for_minutes": 525_600}, "for_minutes"),
    "minutes as text": ({"level": 2, "reason": "r", "for_minutes": "60"}, "for_minutes"),
    "unknown field": ({"level": 2, "reason": "r", "until": "tomorrow"}, "until"),
    "empty site name": ({"level": 2, "reason": "r", "site": ""}, "site"),
    "NUL in the site name": ({"level": 2, "reason": "r", "site": "de\x00fault"}, "site"),
    "a list": ([2, "r"], "body"),
}


@pytest.mark.parametrize("case", list(BAD_SETS), ids=list(BAD_SETS))
def test_a_bad_setting_is_refused_with_a_message_and_changes_nothing(
    client: TestClient, runtime: Runtime, admin: dict[str, str], case: str
) -> None:
    body, field = BAD_SETS[case]
    response = client.put("/v1/lockdown", headers=admin, json=body)
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert field in message, message
    assert client.get("/v1/lockdown", headers=admin).json()["level"] == 0
    assert audit_events(runtime, "lockdown.") == []


def test_a_body_that_is_not_json_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    response = client.put(
        "/v1/lockdown",
        headers={**admin, "Content-Type": "application/json"},
        content=b"level=2&reason=x",
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("query", "body", "status", "named"),
    [
        ({}, None, 400, "reason"),
        ({"reason": "   "}, None, 400, "reason"),
        ({"reason": ""}, None, 422, "reason"),
        ({"reason": "a\x00b"}, None, 422, "reason"),
        ({"reason": "twice"}, {"reason": "twice"}, 400, "reason"),
        ({}, {"reason": ""}, 422, "reason"),
        ({}, {"reason": "r", "level": 0}, 422, "level"),
    ],
    ids=["none", "blank", "empty", "NUL", "query and body", "empty in body", "unknown field"],
)
def test_clearing_needs_one_reason(
    client: TestClient,
    runtime: Runtime,
    admin: dict[str, str],
    query: dict[str, str],
    body: dict[str, Any] | None,
    status: int,
    named: str,
) -> None:
    _set(client, admin, level=2)
    response = client.request("DELETE", "/v1/lockdown", headers=admin, params=query, json=body)
    assert response.status_code == status, response.text
    assert named in response.json()["error"]["message"]
    assert client.get("/v1/lockdown", headers=admin).json()["level"] == 2


# --- what a level does to screening ------------------------------------------------------------


def test_each_level_changes_what_screening_decides(
    client: TestClient, admin: dict[str, str]
) -> None:
    # Normal: a newcomer's ordinary photo is published.
    assert _decide(client, admin, 1, NEWCOMER)["decision"] == "allow"

    _set(client, admin, level=1)
    newcomer = _decide(client, admin, 2, NEWCOMER)
    assert (newcomer["decision"], newcomer["review"], newcomer["lockdown_level"]) == (
        "hold",
        "pending",
        1,
    )
    assert any(reason["code"] == "lockdown" for reason in newcomer["reasons"])
    trusted = _decide(client, admin, 3, TRUSTED)
    assert (trusted["decision"], trusted["lockdown_level"]) == ("allow", 1)

    _set(client, admin, level=2)
    assert _decide(client, admin, 4, TRUSTED)["decision"] == "hold"

    _set(client, admin, level=3)
    paused = _decide(client, admin, 5, TRUSTED)
    assert paused["decision"] == "block"
    assert paused["uploads_paused"] is True
    assert paused["message"], "the site has something to show the uploader"
    assert paused["review"] == "none", "a refused upload is not queued"
    assert paused["lockdown_level"] == 3

    client.delete("/v1/lockdown", headers=admin, params={"reason": "over"})
    back = _decide(client, admin, 6, TRUSTED)
    assert (back["decision"], back["uploads_paused"], back["lockdown_level"]) == (
        "allow",
        False,
        0,
    )


def test_a_level_set_by_hand_wins_over_the_rules(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    settings = make_settings(
        workers={"embedded": False},
        lockdown={
            "rules": [
                {"signal": "new_account_upload", "at_least": 2, "window_minutes": 5, "level": 2}
            ]
        },
    )
    runtime = Runtime.open(settings, clock=clock)
    monitor = LockdownMonitor(runtime.database, settings, clock)
    key = ensure_bootstrap_key(runtime.database)
    admin = {"Authorization": f"Bearer {key}"}
    try:
        with TestClient(create_app(runtime)) as client:
            _decide(client, admin, 1, {"uploader_id": "a", "trust_level": "new"})
            _decide(client, admin, 2, {"uploader_id": "b", "trust_level": "new"})
            clock.advance(seconds=10)
            monitor.tick()

            raised = client.get("/v1/lockdown", headers=admin).json()
            assert (raised["level"], raised["source"]) == (2, "automatic")
            assert raised["automatic"]["level"] == 2
            cause = raised["automatic"]["cause"]["rules"]
            assert [(rule["signal"], rule["measured"]) for rule in cause] == [
                ("new_account_upload", 2)
            ]
            (rule,) = raised["rules"]
            assert (rule["measured"], rule["threshold"], rule["firing"]) == (2, 2, True)
            assert _decide(client, admin, 3, TRUSTED)["decision"] == "hold"

            relaxed = _set(client, admin, level=1, reason="we know these accounts").json()
            assert (relaxed["level"], relaxed["source"]) == (1, "manual")
            assert relaxed["automatic"]["level"] == 2, "the rules still see the attack"
            monitor.tick()
            assert client.get("/v1/lockdown", headers=admin).json()["level"] == 1
            assert _decide(client, admin, 4, TRUSTED)["decision"] == "allow"
    finally:
        runtime.close()
    raised_event, set_event = audit_events(runtime, "lockdown.")[:2]
    assert (raised_event.action, raised_event.actor) == ("lockdown.raised", "vigil")
    assert raised_event.details["rules"][0]["signal"] == "new_account_upload"
    assert set_event.action == "lockdown.set"
    assert set_event.details["reason"] == "we know these accounts"


def test_a_level_set_by_hand_ends_at_its_time(
    client: TestClient, runtime: Runtime, admin: dict[str, str], clock: ManualClock
) -> None:
    _set(client, admin, level=2, for_minutes=30)
    clock.advance(minutes=29, seconds=59)
    assert client.get("/v1/lockdown", headers=admin).json()["level"] == 2
    assert _decide(client, admin, 1, TRUSTED)["decision"] == "hold"

    clock.advance(seconds=1)
    status = client.get("/v1/lockdown", headers=admin).json()
    assert (status["level"], status["source"], status["manual"]) == (0, "none", None)
    assert _decide(client, admin, 2, TRUSTED)["decision"] == "allow"

    LockdownMonitor(runtime.database, runtime.settings, clock).tick()
    (expired,) = audit_events(runtime, "lockdown.override_expired")
    assert expired.details["level"] == 2
    assert expired.details["reason"] == "testing"
    with runtime.database.session() as session:
        state = session.get(LockdownState, 1)
        assert state is not None
        assert state.manual_level is None


def test_the_site_is_told_of_a_change_by_a_signed_webhook(
    client: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    with webhook_receiver() as receiver:
        secret = client.put("/v1/webhook", headers=admin, json={"url": receiver.url}).json()[
            "secret"
        ]
        _set(client, admin, level=3, reason="pausing uploads overnight")
        deliverer = WebhookDeliverer(runtime.database, runtime.settings.webhooks, runtime.metrics)
        try:
            assert deliverer.deliver_due() == 1
        finally:
            deliverer.close()
    (delivery,) = receiver.delivered()
    assert verify_signature(secret, delivery.headers["Vigil-Signature"], delivery.body)
    event = json.loads(delivery.body)
    assert event["type"] == "lockdown.changed"
    data = event["data"]
    assert (data["level"], data["previous_level"], data["source"]) == (3, 0, "manual")
    assert data["uploads_paused"] is True
    assert data["cause"]["reason"] == "pausing uploads overnight"
    assert data["changed_at"] == START.isoformat()


# --- incidents ---------------------------------------------------------------------------------


@pytest.fixture
def known_illegal_incident(client: TestClient, runtime: Runtime, admin: dict[str, str]) -> int:
    """Screen an image a block bank knows: Vigil opens a known_illegal incident on default."""
    stand_in = encode(make_photo(640, 480, seed=101), "PNG")
    create_bank(client, admin, "known", "sha256", "block")
    add_hashes(client, admin, "known", [hashlib.sha256(stand_in).hexdigest()])
    assert screen(client, admin, stand_in, {"uploader_id": "u-bad"}).json()["decision"] == "block"
    with runtime.database.session() as session:
        (incident,) = session.scalars(select(Incident)).all()
        return incident.id


def _pages(runtime: Runtime, incident_id: int) -> list[tuple[int, str]]:
    with runtime.database.session() as session:
        return [
            (page.tier, page.event)
            for page in session.scalars(
                select(Page).where(Page.incident_id == incident_id).order_by(Page.id)
            )
        ]


def test_a_moderator_lists_acknowledges_and_resolves_its_sites_incidents(
    client: TestClient, runtime: Runtime, clock: ManualClock, known_illegal_incident: int
) -> None:
    incident_id = known_illegal_incident
    prefix, moderator = site_key(runtime, "default", Role.MODERATOR)
    listed = client.get("/v1/incidents", headers=moderator)
    assert listed.status_code == 200, listed.text
    (opened,) = listed.json()["open"]
    assert (opened["id"], opened["site"], opened["kind"]) == (
        incident_id,
        "default",
        "known_illegal",
    )
    assert (opened["state"], opened["tiers_paged"]) == ("open", 1)
    assert "ack_token" not in opened
    assert _pages(runtime, incident_id) == [(0, "trigger")]

    clock.advance(minutes=1)
    acknowledged = client.post(f"/v1/incidents/{incident_id}/acknowledge", headers=moderator)
    assert acknowledged.status_code == 200, acknowledged.text
    body = acknowledged.json()
    assert body["state"] == "acknowledged"
    assert body["acknowledged_by"] == f"key:{prefix} (default)"
    assert datetime.fromisoformat(body["acknowledged_at"]) == START + timedelta(minutes=1)
    assert body["next_page_at"] is None

    again = client.post(f"/v1/incidents/{incident_id}/acknowledge", headers=moderator)
    assert again.status_code == 409
    assert "already acknowledged" in again.json()["error"]["message"]

    # Acknowledged, so the second tier is never paged.
    clock.advance(minutes=30)
    LockdownMonitor(runtime.database, runtime.settings, clock).tick()
    assert _pages(runtime, incident_id) == [(0, "trigger")]

    resolved = client.post(
        f"/v1/incidents/{incident_id}/resolve",
        headers=moderator,
        json={"reason": "bank hit handled"},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["state"] == "resolved"
    assert client.post(f"/v1/incidents/{incident_id}/resolve", headers=moderator).status_code == 409
    after = client.get("/v1/incidents", headers=moderator).json()
    assert after["open"] == []
    assert [incident["id"] for incident in after["recent"]] == [incident_id]
    actions = [(event.action, event.actor) for event in audit_events(runtime, "incident.")]
    assert ("incident.acknowledged", f"key:{prefix} (default)") in actions
    resolved_event = next(e for e in audit_events(runtime, "incident.resolved"))
    assert resolved_event.details["why"] == "bank hit handled"


def test_another_sites_incidents_are_invisible(
    client: TestClient, runtime: Runtime, known_illegal_incident: int
) -> None:
    incident_id = known_illegal_incident
    _, stranger = site_key(runtime, "other", Role.MODERATOR)
    assert client.get("/v1/incidents", headers=stranger).json() == {"open": [], "recent": []}
    for action in ("acknowledge", "resolve"):
        response = client.post(f"/v1/incidents/{incident_id}/{action}", headers=stranger)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"no incident {incident_id}"
        missing = client.post(f"/v1/incidents/999999/{action}", headers=stranger)
        assert missing.json()["error"]["message"] == "no incident 999999"
    _, screen_key = site_key(runtime, "default", Role.SCREEN)
    assert client.get("/v1/incidents", headers=screen_key).status_code == 403
    with runtime.database.session() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        assert incident.acknowledged_at is None
        assert incident.resolved_at is None


@pytest.mark.parametrize("incident_id", ["0", "-1", "abc", str(2**40), "1.5"])
def test_a_bad_incident_id_is_a_client_error(
    client: TestClient, admin: dict[str, str], incident_id: str
) -> None:
    response = client.post(f"/v1/incidents/{incident_id}/acknowledge", headers=admin)
    assert response.status_code == 422
    assert "incident_id" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body", [{"reason": ""}, {"reason": "a\x00"}, {"why": "x"}, {"reason": 5}], ids=str
)
def test_a_bad_resolution_is_refused(
    client: TestClient,
    runtime: Runtime,
    admin: dict[str, str],
    known_illegal_incident: int,
    body: Any,
) -> None:
    response = client.post(
        f"/v1/incidents/{known_illegal_incident}/resolve", headers=admin, json=body
    )
    assert response.status_code == 422, response.text
    with runtime.database.session() as session:
        incident = session.get(Incident, known_illegal_incident)
        assert incident is not None
        assert incident.resolved_at is None
