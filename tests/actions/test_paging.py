"""On-call paging end to end: incidents page real HTTP receivers and a real SMTP server on
127.0.0.1, escalate on a manual clock when nobody acknowledges, stop when someone does, and retry
channels that fail. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.actions.conftest import MailServer, MakeMailServer, password_checker
from tests.images import encode, make_photo
from tests.matching.conftest import bank_with
from tests.receiver import Received, WebhookReceiver, webhook_receiver
from vigil.actions import incidents
from vigil.actions.channels import (
    PAGERDUTY_SUMMARY_LIMIT,
    PageMessage,
    email_message,
    pagerduty_body,
    slack_body,
    webhook_body,
)
from vigil.actions.incidents import IncidentKind, PageEvent
from vigil.actions.webhooks import verify_signature
from vigil.clock import ManualClock
from vigil.config import PagingSettings, Settings, load_settings
from vigil.lockdown.monitor import LockdownMonitor
from vigil.matching.banks import BankAction
from vigil.metrics import Metrics
from vigil.policy.uploader import UploaderContext
from vigil.runtime import Runtime
from vigil.signals import HashType
from vigil.store import pages
from vigil.store.database import Database
from vigil.store.models import Incident, Page, Site
from vigil.store.sites import SiteRef, get_or_create_site
from vigil.workers.pages import PageDeliverer

START = datetime(2024, 11, 2, 23, 0, tzinfo=UTC)
PUBLIC_URL = "https://vigil.example.org"
HOOK_SECRET = "paging-hook-secret"
ROUTING_KEY = "R0UT1NGKEY0000000000000000000001"
ONCALL_ADDRESS = "oncall@example.org"
SENDER_ADDRESS = "vigil@example.org"
SITE = "forum"
RETRY_BASE_SECONDS = 5.0


@dataclass
class Bench:
    """One Vigil on a manual clock, paging two tiers of real channels."""

    runtime: Runtime
    clock: ManualClock
    deliverer: PageDeliverer
    hook: WebhookReceiver  # tier 1: signed JSON webhook
    mail: MailServer  # tier 1: e-mail
    slack: WebhookReceiver  # tier 2, after ten minutes
    pagerduty: WebhookReceiver  # tier 2, after ten minutes
    site_id: int

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def database(self) -> Database:
        return self.runtime.database

    def raise_incident(
        self, title: str = "forum: known illegal image uploaded", scope: str = "s1", **details: Any
    ) -> tuple[int, bool]:
        with self.database.write_session() as session:
            site = session.get(Site, self.site_id)
            assert site is not None
            incident, new = incidents.raise_incident(
                session,
                self.settings.paging,
                site,
                IncidentKind.KNOWN_ILLEGAL,
                title,
                {"submission_id": scope, **details},
                self.clock.now(),
                scope=scope,
            )
            return incident.id, new

    def deliver(self) -> int:
        return self.deliverer.deliver_due()

    def tick(self) -> int:
        return LockdownMonitor(self.database, self.settings, self.clock).tick()

    def acknowledge(self, incident_id: int) -> bool:
        with self.database.write_session() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            return incidents.acknowledge(
                session, self.settings.paging, incident, "alice", self.clock.now()
            )

    def resolve(self, incident_id: int) -> bool:
        with self.database.write_session() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            return incidents.resolve(
                session, self.settings.paging, incident, "alice", self.clock.now(), why="handled"
            )

    def incident(self, incident_id: int) -> Incident:
        with self.database.session() as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            return incident

    def pages(self, incident_id: int) -> list[Page]:
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(Page).where(Page.incident_id == incident_id).order_by(Page.id)
                ).all()
            )

    def page(self, incident_id: int, channel: str, event: str = "trigger") -> Page:
        (page,) = [
            page
            for page in self.pages(incident_id)
            if page.channel == channel and page.event == event
        ]
        return page


MakeBench = Callable[..., Bench]


def paging_section(
    hook: WebhookReceiver,
    slack: WebhookReceiver,
    pagerduty: WebhookReceiver,
    smtp_port: int,
    **overrides: Any,
) -> dict[str, Any]:
    return {
        "public_url": PUBLIC_URL,
        "channels": [
            {"name": "oncall_hook", "kind": "webhook", "url": hook.url, "secret": HOOK_SECRET},
            {"name": "oncall_mail", "kind": "email", "to": [ONCALL_ADDRESS]},
            {"name": "leads_slack", "kind": "slack", "url": slack.url},
            {
                "name": "leads_pagerduty",
                "kind": "pagerduty",
                "url": pagerduty.url,
                "routing_key": ROUTING_KEY,
            },
        ],
        "tiers": [
            {"channels": ["oncall_hook", "oncall_mail"], "after_minutes": 0},
            {"channels": ["leads_slack", "leads_pagerduty"], "after_minutes": 10},
        ],
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "sender": SENDER_ADDRESS,
            "timeout_seconds": 5,
        },
        "retry_base_seconds": RETRY_BASE_SECONDS,
        "retry_max_seconds": 60,
        "max_attempts": 3,
        "timeout_seconds": 5,
        **overrides,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def slack() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def pagerduty() -> Iterator[WebhookReceiver]:
    # PagerDuty's Events API answers 202 Accepted.
    with webhook_receiver(statuses=[202] * 50) as receiver:
        yield receiver


@pytest.fixture
def make_bench(
    tmp_path: Path,
    database_url: str | None,
    hook: WebhookReceiver,
    slack: WebhookReceiver,
    pagerduty: WebhookReceiver,
    smtp_server: MailServer,
) -> Iterator[MakeBench]:
    opened: list[Bench] = []

    def build(
        *, smtp_port: int | None = None, smtp_login: tuple[str, str] | None = None, **paging: Any
    ) -> Bench:
        section = paging_section(hook, slack, pagerduty, smtp_port or smtp_server.port, **paging)
        if smtp_login is not None:
            section["smtp"]["username"], section["smtp"]["password"] = smtp_login
        overrides: dict[str, Any] = {"paging": section}
        if database_url:
            overrides["database_url"] = database_url
        settings = load_settings(data_dir=tmp_path / "data", **overrides)
        clock = ManualClock(START)
        runtime = Runtime.open(settings, clock=clock)
        with runtime.database.session() as session:
            site_id = get_or_create_site(session, SITE).id
        bench = Bench(
            runtime,
            clock,
            PageDeliverer(runtime.database, settings, clock, runtime.metrics),
            hook,
            smtp_server,
            slack,
            pagerduty,
            site_id,
        )
        opened.append(bench)
        return bench

    yield build
    for bench in opened:
        bench.deliverer.close()
        bench.runtime.close()


@pytest.fixture
def bench(make_bench: MakeBench) -> Bench:
    return make_bench()


def json_of(request: Received) -> Any:
    return json.loads(request.body)


def ack_url(incident: Incident) -> str:
    return f"{PUBLIC_URL}/review/incidents/{incident.id}/acknowledge?token={incident.ack_token}"


# --- tier 1 -------------------------------------------------------------------------------------


def test_a_new_incident_pages_the_first_tier_by_signed_webhook_and_email(bench: Bench) -> None:
    incident_id, new = bench.raise_incident(uploader_id="u-17")
    assert new

    assert bench.deliver() == 2

    incident = bench.incident(incident_id)
    (request,) = bench.hook.delivered()
    assert verify_signature(HOOK_SECRET, request.headers["Vigil-Signature"], request.body)
    assert not verify_signature("wrong-secret", request.headers["Vigil-Signature"], request.body)
    assert request.headers["Vigil-Event-Type"] == "incident.triggered"
    body = json_of(request)
    assert body["type"] == "incident.triggered"
    assert body["acknowledge_url"] == ack_url(incident)
    assert body["incident"]["id"] == incident_id
    assert body["incident"]["kind"] == "known_illegal"
    assert body["incident"]["site"] == SITE
    assert body["incident"]["tier"] == 1
    assert body["incident"]["details"]["uploader_id"] == "u-17"
    assert body["incident"]["acknowledged_at"] is None

    (mail,) = bench.mail.messages()
    assert mail.sender == SENDER_ADDRESS
    assert mail.recipients == [ONCALL_ADDRESS]
    assert mail.message["Subject"] == "[Vigil] forum: known illegal image uploaded"
    assert mail.message["To"] == ONCALL_ADDRESS
    text = mail.message.get_content()
    assert ack_url(incident) in text
    assert "u-17" in text

    # The second tier is not due for ten minutes.
    assert bench.slack.requests == []
    assert bench.pagerduty.requests == []
    assert {page.status for page in bench.pages(incident_id)} == {pages.DELIVERED}
    assert bench.deliver() == 0
    assert len(bench.hook.requests) == 1


# --- escalation ---------------------------------------------------------------------------------


def test_nobody_acknowledging_for_ten_minutes_pages_slack_and_pagerduty(bench: Bench) -> None:
    incident_id, _ = bench.raise_incident()
    bench.deliver()

    bench.clock.advance(minutes=9)
    bench.tick()
    bench.deliver()
    assert bench.slack.requests == []
    assert bench.pagerduty.requests == []

    bench.clock.advance(minutes=1)
    bench.tick()
    assert bench.deliver() == 2

    incident = bench.incident(incident_id)
    (slack_request,) = bench.slack.delivered()
    slack_message = json_of(slack_request)
    assert ack_url(incident) in slack_message["text"]
    assert "known illegal image uploaded" in slack_message["blocks"][0]["text"]["text"]
    buttons = [
        element["url"]
        for block in slack_message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]
    assert ack_url(incident) in buttons

    (pagerduty_request,) = bench.pagerduty.delivered()
    event = json_of(pagerduty_request)
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == f"vigil-incident-{incident_id}"
    payload = event["payload"]
    assert payload["summary"] == "forum: known illegal image uploaded"
    assert payload["severity"] == "critical"
    assert payload["source"] == SITE
    assert payload["group"] == SITE
    assert payload["class"] == "known_illegal"
    assert payload["component"] == "vigil"
    assert datetime.fromisoformat(payload["timestamp"]) == START
    assert payload["custom_details"]["submission_id"] == "s1"
    assert {"href": ack_url(incident), "text": "Acknowledge in Vigil"} in event["links"]

    # Tier 1 is not paged a second time by the escalation.
    assert len(bench.hook.requests) == 1
    assert len(bench.mail.messages()) == 1


def test_acknowledging_in_time_stops_escalation(bench: Bench) -> None:
    incident_id, _ = bench.raise_incident()
    bench.deliver()
    bench.clock.advance(minutes=5)
    assert bench.acknowledge(incident_id)
    assert not bench.acknowledge(incident_id)  # once is enough

    bench.clock.advance(minutes=15)
    bench.tick()
    bench.deliver()
    # PagerDuty never heard of the incident, so it is told neither of the acknowledgement nor
    # of the resolution; only tier 1 was ever paged.
    assert bench.resolve(incident_id)
    bench.deliver()

    assert bench.slack.requests == []
    assert bench.pagerduty.requests == []
    assert len(bench.hook.requests) == 1
    assert len(bench.mail.messages()) == 1
    assert bench.incident(incident_id).tier == 0


def test_pagerduty_hears_acknowledge_and_resolve_for_an_incident_it_was_paged_about(
    bench: Bench,
) -> None:
    incident_id, _ = bench.raise_incident()
    bench.clock.advance(minutes=10)
    bench.tick()
    bench.deliver()
    bench.clock.advance(minutes=2)
    bench.acknowledge(incident_id)
    bench.deliver()
    bench.clock.advance(minutes=30)
    bench.resolve(incident_id)
    bench.deliver()

    events = [json_of(request) for request in bench.pagerduty.delivered()]
    assert [event["event_action"] for event in events] == ["trigger", "acknowledge", "resolve"]
    assert {event["dedup_key"] for event in events} == {f"vigil-incident-{incident_id}"}
    assert all(event["routing_key"] == ROUTING_KEY for event in events)
    assert "payload" not in events[1]
    # Channels that keep no state are not told; Slack got the one page of tier 2.
    assert len(bench.slack.requests) == 1
    assert len(bench.hook.requests) == 1


def test_a_trigger_page_still_pending_when_the_incident_is_acknowledged_is_not_sent(
    bench: Bench,
) -> None:
    incident_id, _ = bench.raise_incident()
    bench.acknowledge(incident_id)

    assert bench.deliver() == 2

    assert bench.hook.requests == []
    assert bench.mail.messages() == []
    for page in bench.pages(incident_id):
        assert page.status == pages.CANCELLED
        assert page.sent_at is None
        assert page.last_error == "not sent: the incident was acknowledged first"
    assert bench.deliver() == 0


def test_acknowledging_between_escalation_and_delivery_tells_pagerduty_nothing(
    bench: Bench,
) -> None:
    incident_id, _ = bench.raise_incident()
    bench.deliver()
    bench.clock.advance(minutes=10)
    bench.tick()  # tier 2 pages are written...
    bench.acknowledge(incident_id)  # ...and someone acknowledges before they go out
    bench.resolve(incident_id)

    bench.deliver()

    assert bench.pagerduty.requests == []
    assert bench.slack.requests == []
    outcome = {(page.channel, page.event): page.status for page in bench.pages(incident_id)}
    assert outcome == {
        ("oncall_hook", "trigger"): pages.DELIVERED,
        ("oncall_mail", "trigger"): pages.DELIVERED,
        ("leads_slack", "trigger"): pages.CANCELLED,
        ("leads_pagerduty", "trigger"): pages.CANCELLED,
        ("leads_pagerduty", "acknowledge"): pages.CANCELLED,
        ("leads_pagerduty", "resolve"): pages.CANCELLED,
    }
    follow_up = bench.page(incident_id, "leads_pagerduty", "acknowledge")
    assert follow_up.last_error == "not sent: the channel was never paged about this incident"


def test_a_trigger_page_still_pending_when_the_incident_is_resolved_is_not_sent(
    bench: Bench,
) -> None:
    incident_id, _ = bench.raise_incident()
    bench.resolve(incident_id)

    bench.deliver()

    assert bench.hook.requests == []
    assert bench.mail.messages() == []
    assert {page.status for page in bench.pages(incident_id)} == {pages.CANCELLED}


def test_the_acknowledgement_link_needs_the_incidents_own_token(bench: Bench) -> None:
    incident_id, _ = bench.raise_incident()
    other_id, _ = bench.raise_incident(scope="s2")
    token = bench.incident(incident_id).ack_token
    with bench.database.session() as session:
        found = incidents.find_by_token(session, incident_id, token)
        assert found is not None
        assert found.id == incident_id
        assert incidents.find_by_token(session, incident_id, token[:-1] + "x") is None
        assert incidents.find_by_token(session, incident_id, "") is None
        assert incidents.find_by_token(session, other_id, token) is None
        assert incidents.find_by_token(session, 10_000, token) is None


# --- repeated triggers --------------------------------------------------------------------------


def test_repeated_triggers_join_the_open_incident_and_page_once(bench: Bench) -> None:
    first_id, first_new = bench.raise_incident()
    bench.deliver()
    bench.clock.advance(minutes=1)
    again_id, again_new = bench.raise_incident()
    third_id, _ = bench.raise_incident()

    assert (first_new, again_new) == (True, False)
    assert first_id == again_id == third_id
    assert bench.incident(first_id).trigger_count == 3
    assert bench.deliver() == 0
    assert len(bench.hook.requests) == 1
    assert len(bench.mail.messages()) == 1

    bench.resolve(first_id)
    bench.clock.advance(minutes=1)
    new_id, new = bench.raise_incident()
    assert new
    assert new_id != first_id
    assert bench.deliver() == 2
    assert [json_of(request)["incident"]["id"] for request in bench.hook.delivered()] == [
        first_id,
        new_id,
    ]
    assert len(bench.mail.messages()) == 2


# --- failures and retries -----------------------------------------------------------------------


def test_a_receiver_answering_500_is_retried_after_backoff(bench: Bench) -> None:
    bench.hook.statuses.append(500)
    incident_id, _ = bench.raise_incident()

    bench.deliver()

    page = bench.page(incident_id, "oncall_hook")
    assert (page.status, page.attempts) == (pages.PENDING, 1)
    assert page.last_error is not None
    assert "HTTP 500" in page.last_error
    assert "oncall_hook" in page.last_error
    delay = (page.next_attempt_at - START).total_seconds()
    assert RETRY_BASE_SECONDS * 0.8 <= delay <= RETRY_BASE_SECONDS * 1.2
    # The e-mail of the same tier was not held back by the failing webhook.
    assert bench.page(incident_id, "oncall_mail").status == pages.DELIVERED

    assert bench.deliver() == 0  # not due yet
    bench.clock.advance(RETRY_BASE_SECONDS * 1.2)
    assert bench.deliver() == 1

    page = bench.page(incident_id, "oncall_hook")
    assert (page.status, page.attempts, page.last_error) == (pages.DELIVERED, 2, None)
    assert page.sent_at == bench.clock.now()
    first, second = bench.hook.requests
    assert (first.answered, second.answered) == (500, 200)
    registry = bench.runtime.metrics.registry
    for outcome, count in [("retrying", 1), ("delivered", 2), ("failed", None)]:
        assert registry.get_sample_value("vigil_page_attempts_total", {"outcome": outcome}) == count
    # One page, one event id: a receiver can drop a repeat.
    assert first.headers["Vigil-Event-Id"] == second.headers["Vigil-Event-Id"]
    assert verify_signature(HOOK_SECRET, second.headers["Vigil-Signature"], second.body)


def test_an_unreachable_smtp_server_is_retried_and_finally_given_up(
    make_bench: MakeBench, closed_port: int
) -> None:
    bench = make_bench(smtp_port=closed_port)
    incident_id, _ = bench.raise_incident()

    bench.deliver()
    page = bench.page(incident_id, "oncall_mail")
    assert (page.status, page.attempts) == (pages.PENDING, 1)
    assert page.last_error is not None
    assert f"SMTP 127.0.0.1:{closed_port}" in page.last_error
    assert "ConnectionRefusedError" in page.last_error
    assert bench.page(incident_id, "oncall_hook").status == pages.DELIVERED

    bench.clock.advance(RETRY_BASE_SECONDS * 1.2)
    bench.deliver()
    assert bench.page(incident_id, "oncall_mail").attempts == 2
    bench.clock.advance(RETRY_BASE_SECONDS * 2 * 1.2)
    bench.deliver()  # the third of max_attempts = 3

    page = bench.page(incident_id, "oncall_mail")
    assert (page.status, page.attempts) == (pages.FAILED, 3)
    assert page.last_error is not None
    assert "ConnectionRefusedError" in page.last_error
    bench.clock.advance(minutes=5)
    assert bench.deliver() == 0
    assert bench.mail.messages() == []


SMTP_LOGIN = ("vigil", "s3cret")


@pytest.fixture
def login_smtp_server(make_smtp_server: MakeMailServer) -> MailServer:
    """A server that takes mail only after a login (without TLS: it has no certificate, and
    it is on 127.0.0.1)."""
    return make_smtp_server(
        authenticator=password_checker(*SMTP_LOGIN), auth_required=True, auth_require_tls=False
    )


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_pages_log_in_to_an_smtp_server_that_requires_it(
    make_bench: MakeBench, login_smtp_server: MailServer
) -> None:
    bench = make_bench(smtp_port=login_smtp_server.port, smtp_login=SMTP_LOGIN)
    incident_id, _ = bench.raise_incident()

    bench.deliver()

    (mail,) = login_smtp_server.messages()
    assert mail.recipients == [ONCALL_ADDRESS]
    assert bench.page(incident_id, "oncall_mail").status == pages.DELIVERED


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_a_wrong_smtp_password_is_reported(
    make_bench: MakeBench, login_smtp_server: MailServer
) -> None:
    bench = make_bench(smtp_port=login_smtp_server.port, smtp_login=(SMTP_LOGIN[0], "wrong"))
    incident_id, _ = bench.raise_incident()

    bench.deliver()

    assert login_smtp_server.messages() == []
    page = bench.page(incident_id, "oncall_mail")
    assert (page.status, page.attempts) == (pages.PENDING, 1)
    assert page.last_error is not None
    assert "SMTPAuthenticationError" in page.last_error
    assert "oncall_mail" in page.last_error


def test_a_receiver_that_never_answers_2xx_fails_the_page_after_max_attempts(
    bench: Bench,
) -> None:
    bench.hook.statuses.extend([503, 503, 503, 503])
    incident_id, _ = bench.raise_incident()
    for _ in range(5):
        bench.deliver()
        bench.clock.advance(minutes=2)

    page = bench.page(incident_id, "oncall_hook")
    assert (page.status, page.attempts) == (pages.FAILED, 3)
    assert page.last_error is not None
    assert "HTTP 503" in page.last_error
    assert len(bench.hook.requests) == 3


def test_a_page_for_a_channel_removed_from_the_configuration_fails_clearly(
    bench: Bench,
) -> None:
    incident_id, _ = bench.raise_incident()
    paging = bench.settings.paging.model_dump()
    paging["channels"] = [c for c in paging["channels"] if c["name"] != "oncall_hook"]
    paging["tiers"] = [{"channels": ["oncall_mail"], "after_minutes": 0}]
    reconfigured = bench.settings.model_copy(update={"paging": PagingSettings(**paging)})
    deliverer = PageDeliverer(bench.database, reconfigured, bench.clock, bench.runtime.metrics)
    try:
        assert deliverer.deliver_due() == 2
    finally:
        deliverer.close()

    page = bench.page(incident_id, "oncall_hook")
    assert page.status == pages.FAILED
    assert page.last_error == "channel 'oncall_hook' is not in the configuration (any more)"
    assert bench.hook.requests == []
    assert bench.page(incident_id, "oncall_mail").status == pages.DELIVERED


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, paging={"retry_base_seconds": 5, "retry_max_seconds": 60}
    )
    database = Database("sqlite://")  # never queried: backoff is arithmetic
    deliverer = PageDeliverer(database, settings, ManualClock(START), Metrics(database))
    try:
        for attempts, nominal in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (9, 60)]:
            delays = [deliverer.backoff_seconds(attempts) for _ in range(50)]
            assert all(nominal * 0.8 <= delay <= nominal * 1.2 for delay in delays)
            assert max(delays) > min(delays)  # jittered, so retries do not arrive together
    finally:
        deliverer.close()
        database.dispose()


# --- concurrency --------------------------------------------------------------------------------


def test_two_deliverers_racing_send_each_page_exactly_once(bench: Bench) -> None:
    incident_ids = [bench.raise_incident(scope=f"s{number}")[0] for number in range(8)]
    # A second connection pool, as a second process would have.
    other_database = Database(bench.database.url)
    deliverers = [
        bench.deliverer,
        PageDeliverer(other_database, bench.settings, bench.clock, bench.runtime.metrics),
    ]
    start = threading.Barrier(len(deliverers))
    handled: list[int] = []
    errors: list[BaseException] = []

    def run(deliverer: PageDeliverer) -> None:
        try:
            start.wait()
            handled.append(deliverer.deliver_due())
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(deliverer,)) for deliverer in deliverers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        deliverers[1].close()
        other_database.dispose()

    assert errors == []
    assert sum(handled) == 2 * len(incident_ids)
    hooked = sorted(json_of(request)["incident"]["id"] for request in bench.hook.requests)
    assert hooked == sorted(incident_ids)
    event_ids = [request.headers["Vigil-Event-Id"] for request in bench.hook.requests]
    assert len(set(event_ids)) == len(event_ids)
    assert len(bench.mail.messages()) == len(incident_ids)
    for incident_id in incident_ids:
        for page in bench.pages(incident_id):
            assert (page.status, page.attempts) == (pages.DELIVERED, 1)


# --- what people control cannot be turned into headers, links or mentions ------------------------


def test_line_breaks_in_incident_text_cannot_add_email_headers(bench: Bench) -> None:
    incident_id, _ = bench.raise_incident(
        title="forum: known illegal image\r\nBcc: thief@example.net\x85X-Forged: 1",
        uploader_id="u1\r\nBcc: thief@example.net\r\n\r\nforged body\u2028X-Forged: 2",
    )
    bench.deliver()

    (mail,) = bench.mail.messages()
    assert mail.recipients == [ONCALL_ADDRESS]
    assert mail.message["Bcc"] is None
    assert mail.message["X-Forged"] is None
    assert sorted(mail.message.keys()) == sorted(
        ["Subject", "From", "To", "Date", "Message-ID", "Content-Type",
         "Content-Transfer-Encoding", "MIME-Version"]
    )  # fmt: skip
    assert mail.message["Subject"] == (
        "[Vigil] forum: known illegal image Bcc: thief@example.net X-Forged: 1"
    )
    body = mail.message.get_content()
    assert "u1 Bcc: thief@example.net forged body X-Forged: 2" in body
    assert bench.page(incident_id, "oncall_mail").status == pages.DELIVERED


def test_slack_text_cannot_mention_everyone_or_forge_links(bench: Bench) -> None:
    incident_id, _ = bench.raise_incident(
        title="forum: <!channel> see <https://evil.example|your bank> & more"
    )
    bench.clock.advance(minutes=10)
    bench.tick()
    bench.deliver()

    (request,) = bench.slack.delivered()
    message = json_of(request)
    escaped = "&lt;!channel&gt; see &lt;https://evil.example|your bank&gt; &amp; more"
    assert escaped in message["text"]
    assert escaped in message["blocks"][0]["text"]["text"]
    assert "<!channel>" not in request.body.decode()
    # Vigil's own link is still a link.
    assert f"<{ack_url(bench.incident(incident_id))}|Acknowledge>" in request.body.decode()


# --- a replacement sender -----------------------------------------------------------------------


def test_a_replacement_sender_gets_the_messages_and_nothing_is_sent(bench: Bench) -> None:
    recorded: list[tuple[str, PageMessage]] = []
    deliverer = PageDeliverer(
        bench.database,
        bench.settings,
        bench.clock,
        bench.runtime.metrics,
        sender=lambda channel, message: recorded.append((channel.name, message)),
    )
    incident_id, _ = bench.raise_incident()

    assert deliverer.deliver_due() == 2
    deliverer.close()

    assert sorted(name for name, _ in recorded) == ["oncall_hook", "oncall_mail"]
    message = recorded[0][1]
    assert message.incident_id == incident_id
    assert message.ack_url == ack_url(bench.incident(incident_id))
    assert message.review_url == f"{PUBLIC_URL}/review/lockdown"
    assert message.created_at == START
    assert bench.hook.requests == []
    assert bench.mail.messages() == []
    assert {page.status for page in bench.pages(incident_id)} == {pages.DELIVERED}


# --- end to end through screening ---------------------------------------------------------------


def test_an_upload_matching_a_block_bank_pages_on_call(bench: Bench) -> None:
    stand_in = encode(make_photo(800, 600, seed=101), "PNG")
    bank_with(
        bench.runtime,
        "known-illegal",
        HashType.SHA256,
        BankAction.BLOCK,
        [hashlib.sha256(stand_in).hexdigest()],
    )
    bench.runtime.matcher.refresh()

    outcome = bench.runtime.screening.screen(
        SiteRef(bench.site_id, SITE),
        stand_in,
        UploaderContext(uploader_id="wave-1"),
        idempotency_key=None,
        actor="test",
    )
    assert outcome.submission.decision == "block"

    with bench.database.session() as session:
        (incident,) = incidents.open_incidents(session, bench.site_id)
    assert incident.kind == IncidentKind.KNOWN_ILLEGAL
    assert incident.opened_at == START
    assert incident.details["uploader_id"] == "wave-1"

    assert bench.deliver() == 2
    (request,) = bench.hook.delivered()
    body = json_of(request)
    assert body["incident"]["id"] == incident.id
    assert body["incident"]["kind"] == "known_illegal"
    assert body["incident"]["details"]["submission_id"] == outcome.submission.id
    assert body["acknowledge_url"] == ack_url(incident)
    (mail,) = bench.mail.messages()
    assert "known illegal image uploaded" in mail.message["Subject"]


# --- formats without a transport ----------------------------------------------------------------


def test_an_acknowledgement_says_who_in_every_format(bench: Bench) -> None:
    incident_id, _ = bench.raise_incident()
    bench.clock.advance(minutes=3)
    bench.acknowledge(incident_id)
    with bench.database.session() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        page = Page(id=99, incident_id=incident_id, tier=1, channel="x", event="acknowledge")
        message = PageMessage.build(page, incident, SITE, bench.settings, bench.clock.now())

    assert message.headline == "Acknowledged: forum: known illegal image uploaded"
    assert slack_body(message)["text"] == message.headline
    email = email_message(message, SENDER_ADDRESS, [ONCALL_ADDRESS])
    assert email["Subject"] == "[Vigil] Acknowledged: forum: known illegal image uploaded"
    assert "by alice" in email.get_content()
    document = webhook_body(message)
    assert document["type"] == "incident.acknowledged"
    assert document["incident"]["acknowledged_by"] == "alice"
    acknowledged_at = START + timedelta(minutes=3)
    assert datetime.fromisoformat(document["incident"]["acknowledged_at"]) == acknowledged_at
    assert document["incident"]["tier"] == 2


def message_about(kind: IncidentKind, title: str = "forum: trouble", **details: Any) -> PageMessage:
    return PageMessage(
        page_id=1,
        event=PageEvent.TRIGGER,
        incident_id=7,
        kind=kind.value,
        title=title,
        site=SITE,
        opened_at=START,
        trigger_count=1,
        tier=1,
        details=details,
        acknowledged_at=None,
        acknowledged_by=None,
        resolved_at=None,
        resolved_by=None,
        ack_url=f"{PUBLIC_URL}/review/incidents/7/acknowledge?token=t",
        review_url=f"{PUBLIC_URL}/review/lockdown",
        source=SITE,
        created_at=START,
    )


@pytest.mark.parametrize(
    ("kind", "details", "severity"),
    [
        (IncidentKind.KNOWN_ILLEGAL, {}, "critical"),
        (IncidentKind.LOCKDOWN, {"level": 1}, "error"),
        (IncidentKind.LOCKDOWN, {"level": 2}, "critical"),
        (IncidentKind.LOCKDOWN, {"level": 3}, "critical"),
        (IncidentKind.LOCKDOWN, {"level": "unreadable"}, "error"),
        (IncidentKind.URGENT_UNREVIEWED, {"overdue": 4}, "error"),
    ],
)
def test_pagerduty_severity_follows_what_happened(
    kind: IncidentKind, details: dict[str, Any], severity: str
) -> None:
    event = pagerduty_body(message_about(kind, **details), ROUTING_KEY)
    assert event["payload"]["severity"] == severity
    assert event["payload"]["class"] == kind.value


def test_pagerduty_summary_is_cut_to_its_limit() -> None:
    event = pagerduty_body(message_about(IncidentKind.LOCKDOWN, "x" * 2000), ROUTING_KEY)
    summary = event["payload"]["summary"]
    assert len(summary) == PAGERDUTY_SUMMARY_LIMIT
    assert summary.startswith("x" * 1000)
