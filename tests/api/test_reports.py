"""POST /v1/reports: community reports hide a published image at the threshold, pending review."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.api.conftest import has_stored_copy, hold_exactly, screen, site_key
from tests.images import encode, make_photo
from tests.receiver import WebhookReceiver, webhook_receiver
from vigil.actions.webhooks import verify_signature
from vigil.api import create_app
from vigil.clock import Clock, ManualClock
from vigil.config import Settings
from vigil.lockdown import control
from vigil.lockdown.kinds import LockdownLevel, SignalKind
from vigil.lockdown.monitor import LockdownMonitor
from vigil.review import queue
from vigil.runtime import BOOTSTRAP_SITE, Runtime, ensure_bootstrap_key
from vigil.store import audit
from vigil.store.models import AuditEvent, Base, Report, SiteSignal, Submission
from vigil.store.sites import Role, get_site
from vigil.workers.webhooks import WebhookDeliverer

HIDE_REQUESTED = "submission.hide_requested"
REPORT_RULE = {"signal": "report", "at_least": 3, "window_minutes": 10, "level": 1}


@dataclass
class Vigil:
    """A running Vigil, the site's admin key, and the calls a site makes."""

    runtime: Runtime
    client: TestClient
    headers: dict[str, str]

    def publish(self, seed: int, context: dict[str, Any] | None = None) -> str:
        """Screen a fresh photo the site then shows; returns its submission id."""
        body = screen(self.client, self.headers, photo(seed), context or {}).json()
        assert body["decision"] == "allow", body
        return str(body["submission_id"])

    def post_report(self, headers: dict[str, str] | None = None, **request: Any) -> httpx.Response:
        """POST /v1/reports with this site's key (or ``headers``) and the rest as given."""
        response: httpx.Response = self.client.post(
            "/v1/reports", headers=self.headers if headers is None else headers, **request
        )
        return response

    def report(
        self,
        submission_id: str,
        reporter: str,
        reason: str = "spam",
        trust: str | None = "basic",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        document = {"submission_id": submission_id, "reporter_id": reporter, "reason": reason}
        if trust is not None:
            document["reporter_trust"] = trust
        return self.post_report(headers, json={**document, **extra})

    def report_image(
        self,
        image: bytes,
        document: dict[str, Any],
        context: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        form = {"report": json.dumps(document)}
        if context is not None:
            form["context"] = json.dumps(context)
        return self.post_report(
            headers, files={"image": ("reported.jpg", image, "image/jpeg")}, data=form
        )

    def submission(self, submission_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/submissions/{submission_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def decide(self, submission_id: str, decision: str) -> None:
        response = self.client.post(
            f"/v1/submissions/{submission_id}/decision",
            headers=self.headers,
            json={"decision": decision},
        )
        assert response.status_code == 200, response.text

    def watch_webhooks(self, receiver: WebhookReceiver) -> str:
        """Send the site's webhooks to ``receiver``; returns the signing secret."""
        response = self.client.put("/v1/webhook", headers=self.headers, json={"url": receiver.url})
        assert response.status_code == 200, response.text
        return str(response.json()["secret"])

    def deliver_webhooks(self) -> None:
        """What the embedded worker does on its next poll (switched off here, so the test
        decides when)."""
        deliverer = WebhookDeliverer(
            self.runtime.database, self.runtime.settings.webhooks, self.runtime.metrics
        )
        try:
            deliverer.deliver_due()
        finally:
            deliverer.close()

    def count(self, model: type[Base], *where: Any) -> int:
        with self.runtime.database.session() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def audited(self, action: str) -> list[AuditEvent]:
        with self.runtime.database.session() as session:
            return list(
                session.scalars(
                    select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
                )
            )


def photo(seed: int) -> bytes:
    return encode(make_photo(320, 240, seed=seed), "JPEG")


def events(receiver: WebhookReceiver, event_type: str) -> list[dict[str, Any]]:
    bodies = [json.loads(request.body) for request in receiver.delivered()]
    return [body for body in bodies if body["type"] == event_type]


@pytest.fixture
def open_vigil(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Vigil]]:
    """Build a Vigil on SQLite or PostgreSQL, optionally on a clock the test moves.

    No background worker runs: tests deliver webhooks and measure lockdown rules when they
    choose, so nothing races the assertions.
    """
    with ExitStack() as stack:

        def build(clock: Clock | None = None, **overrides: Any) -> Vigil:
            settings = make_settings(workers={"embedded": False}, **overrides)
            runtime = Runtime.open(settings, clock=clock)
            stack.callback(runtime.close)
            app = create_app(runtime)
            client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            key = ensure_bootstrap_key(runtime.database)
            return Vigil(runtime, client, {"Authorization": f"Bearer {key}"})

        yield build


@pytest.fixture
def vigil(open_vigil: Callable[..., Vigil]) -> Vigil:
    return open_vigil()


def test_reports_hide_a_published_image_at_the_threshold_until_a_moderator_decides(
    vigil: Vigil,
) -> None:
    with webhook_receiver() as receiver:
        secret = vigil.watch_webhooks(receiver)
        submission_id = vigil.publish(1, {"uploader_id": "poster", "ref": "post-1"})

        first = vigil.report(submission_id, "member-1").json()
        second = vigil.report(submission_id, "member-2", reason="harassment").json()
        before_threshold = vigil.submission(submission_id)
        vigil.deliver_webhooks()
        told_before_threshold = events(receiver, HIDE_REQUESTED)
        third = vigil.report(submission_id, "member-3", note="posted in every thread").json()
        vigil.deliver_webhooks()
        with vigil.runtime.database.session() as session:
            waiting = {
                item.submission.id: item.submission.priority
                for item in queue.pending(session, datetime.now(UTC))
            }
        vigil.decide(submission_id, "allow")
        vigil.deliver_webhooks()
        decided = events(receiver, "submission.decided")

    assert (first["total_weight"], second["total_weight"], third["total_weight"]) == (1, 2, 3)
    assert not first["hide_requested"]
    assert not second["hide_requested"]
    assert (second["decision"], second["hidden"]) == ("allow", False)
    assert (before_threshold["decision"], before_threshold["review"]) == ("allow", "none")
    assert told_before_threshold == []
    assert third["hide_requested"]
    assert third["hidden"]
    assert (third["decision"], third["review"]) == ("hold", "pending")
    [hide] = events(receiver, HIDE_REQUESTED)
    [request] = [r for r in receiver.delivered() if json.loads(r.body)["type"] == HIDE_REQUESTED]
    assert verify_signature(secret, request.headers["Vigil-Signature"], request.body)
    assert hide["data"]["submission_id"] == submission_id
    assert (hide["data"]["ref"], hide["data"]["uploader_id"]) == ("post-1", "poster")
    assert hide["data"]["reports"] == 3
    assert hide["data"]["reasons"] == {"harassment": 1, "spam": 2}
    assert hide["data"]["weight"] == 3
    assert hide["data"]["child_safety"] is False
    assert hide["data"]["requested_at"]
    assert waiting == {submission_id: 1}, "queued at high priority"
    [decision] = decided
    assert decision["data"]["submission_id"] == submission_id
    assert (decision["data"]["decision"], decision["data"]["previous_decision"]) == (
        "allow",
        "hold",
    )
    [audited] = vigil.audited(HIDE_REQUESTED)
    assert audited.subject == submission_id
    assert len(vigil.audited("report.received")) == 3


def test_a_hidden_image_records_why_and_when(vigil: Vigil) -> None:
    submission_id = vigil.publish(2)
    for reporter in ("a", "b", "c"):
        vigil.report(submission_id, reporter, reason="hate")

    state = vigil.submission(submission_id)
    with vigil.runtime.database.session() as session:
        row = session.get(Submission, submission_id)
        assert row is not None
        hide_requested_at = row.hide_requested_at

    [reason] = [r for r in state["reasons"] if r["code"] == "community_reports"]
    assert reason["verdict"] == "hold"
    assert (reason["reports"], reason["weight"]) == (3, 3)
    assert reason["report_reasons"] == {"hate": 3}
    assert "3 community reports" in reason["message"]
    assert state["priority"] == "high"
    assert state["initial_decision"] == "allow"
    assert hide_requested_at is not None


def test_only_reports_made_since_the_moderators_decision_count(vigil: Vigil) -> None:
    submission_id = vigil.publish(3)
    for reporter in ("a", "b", "c"):
        vigil.report(submission_id, reporter)
    vigil.decide(submission_id, "allow")

    after = [vigil.report(submission_id, reporter).json() for reporter in ("d", "e")]
    third = vigil.report(submission_id, "f").json()

    assert [body["total_weight"] for body in after] == [1, 2]
    assert all(body["decision"] == "allow" for body in after)
    assert third["hide_requested"], "three new reports hide it again"
    assert len(vigil.audited(HIDE_REQUESTED)) == 2


def test_trusted_reporters_count_double(vigil: Vigil) -> None:
    submission_id = vigil.publish(4)

    one = vigil.report(submission_id, "veteran-1", trust="trusted").json()
    two = vigil.report(submission_id, "veteran-2", trust="trusted").json()

    assert (one["weight"], one["total_weight"], one["hidden"]) == (2, 2, False)
    assert (two["total_weight"], two["hide_requested"]) == (4, True)


def test_reporters_without_a_trust_level_count_for_the_unknown_weight(vigil: Vigil) -> None:
    submission_id = vigil.publish(5)

    bodies = [vigil.report(submission_id, f"anon-{n}", trust=None).json() for n in range(6)]
    new_member = vigil.report(vigil.publish(6), "newcomer", trust="new").json()

    assert [body["weight"] for body in bodies] == [0.5] * 6
    assert [body["hide_requested"] for body in bodies] == [False] * 5 + [True]
    assert new_member["weight"] == 0.5


def test_one_child_abuse_report_hides_the_image_at_once_for_the_child_safety_team(
    vigil: Vigil,
) -> None:
    with webhook_receiver() as receiver:
        vigil.watch_webhooks(receiver)
        submission_id = vigil.publish(7, {"uploader_id": "poster"})

        body = vigil.report(submission_id, "member", reason="child_abuse").json()
        vigil.deliver_webhooks()

    state = vigil.submission(submission_id)
    with vigil.runtime.database.session() as session:
        row = session.get(Submission, submission_id)
        assert row is not None
        for_child_safety_team = queue.needs_child_safety(row)
    assert body["hide_requested"]
    assert body["hidden"]
    assert state["priority"] == "urgent"
    assert "child_safety" in state["flags"]
    assert for_child_safety_team
    [hide] = events(receiver, HIDE_REQUESTED)
    assert hide["data"]["child_safety"] is True
    assert hide["data"]["reasons"] == {"child_abuse": 1}


def test_a_newcomers_child_abuse_report_alone_does_not_hide(vigil: Vigil) -> None:
    """Below ``child_safety_hide_at`` (1.0): one brand-new account cannot take an image down."""
    submission_id = vigil.publish(8)

    body = vigil.report(submission_id, "newcomer", reason="child_abuse", trust="new").json()

    assert (body["hide_requested"], body["decision"]) == (False, "allow")


def test_a_reporter_counts_once_per_image(vigil: Vigil) -> None:
    submission_id = vigil.publish(9)

    first = vigil.report(submission_id, "persistent").json()
    repeats = [
        vigil.report(submission_id, "persistent", reason=reason).json()
        for reason in ("spam", "child_abuse", "hate")
    ]

    assert not first["duplicate"]
    assert all(body["duplicate"] for body in repeats)
    assert {body["report_id"] for body in repeats} == {first["report_id"]}
    assert [body["total_weight"] for body in repeats] == [1, 1, 1]
    assert all(body["decision"] == "allow" for body in repeats)
    assert vigil.count(Report) == 1
    assert vigil.count(SiteSignal, SiteSignal.kind == SignalKind.REPORT.value) == 1
    assert len(vigil.audited("report.received")) == 1


def test_reports_arriving_together_hide_the_image_once(vigil: Vigil) -> None:
    submission_id = vigil.publish(10)
    barrier = threading.Barrier(6)
    bodies: list[dict[str, Any]] = []

    def report(reporter: str) -> None:
        barrier.wait()
        bodies.append(vigil.report(submission_id, reporter).json())

    threads = [threading.Thread(target=report, args=(f"m{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(body["total_weight"] for body in bodies) == [1, 2, 3, 4, 5, 6]
    assert [body["hide_requested"] for body in bodies].count(True) == 1
    assert len(vigil.audited(HIDE_REQUESTED)) == 1


def test_reports_on_a_held_image_are_counted_but_ask_for_no_hiding(vigil: Vigil) -> None:
    with webhook_receiver() as receiver:
        vigil.watch_webhooks(receiver)
        image = photo(11)
        hold_exactly(vigil.client, vigil.headers, image)
        held = screen(vigil.client, vigil.headers, image).json()
        assert held["decision"] == "hold"

        bodies = [vigil.report(held["submission_id"], f"m{n}").json() for n in range(4)]
        vigil.deliver_webhooks()

    assert [body["hide_requested"] for body in bodies] == [False] * 4
    assert all(body["hidden"] and body["decision"] == "hold" for body in bodies)
    assert bodies[-1]["total_weight"] == 4
    assert events(receiver, HIDE_REQUESTED) == []
    assert vigil.audited(HIDE_REQUESTED) == []
    assert vigil.count(SiteSignal, SiteSignal.kind == SignalKind.REPORT.value) == 4


def test_a_child_abuse_report_on_a_held_image_sends_it_to_the_child_safety_team(
    vigil: Vigil,
) -> None:
    image = photo(12)
    hold_exactly(vigil.client, vigil.headers, image)
    held = screen(vigil.client, vigil.headers, image).json()
    assert held["priority"] == "normal"

    body = vigil.report(held["submission_id"], "member", reason="child_abuse").json()

    state = vigil.submission(held["submission_id"])
    assert body["hide_requested"] is False
    assert (state["priority"], state["review"]) == ("urgent", "pending")
    assert "child_safety" in state["flags"]
    assert len(vigil.audited("submission.escalated")) == 1


def test_a_blocked_image_stays_blocked_and_is_not_hidden_again(vigil: Vigil) -> None:
    image = photo(13)
    hold_exactly(vigil.client, vigil.headers, image)
    held = screen(vigil.client, vigil.headers, image).json()
    vigil.decide(held["submission_id"], "block")

    bodies = [vigil.report(held["submission_id"], f"m{n}").json() for n in range(3)]

    assert all(body["decision"] == "block" and body["hidden"] for body in bodies)
    assert not any(body["hide_requested"] for body in bodies)
    assert vigil.submission(held["submission_id"])["review"] == "decided"


def test_a_report_with_the_image_finds_its_submission_and_keeps_a_copy(vigil: Vigil) -> None:
    image = photo(14)
    older = vigil.publish(14)
    newest = vigil.publish(14)
    copy_before = has_stored_copy(vigil.runtime, newest)

    body = vigil.report_image(image, {"reporter_id": "member", "reason": "violence"}).json()

    assert body["submission_id"] == newest != older
    assert body["screened"] is False
    assert copy_before is False, "Vigil keeps no copy of an image it allowed"
    assert has_stored_copy(vigil.runtime, newest)
    with vigil.runtime.database.session() as session:
        row = session.get(Submission, newest)
        assert row is not None
        stored = vigil.runtime.images.root / (row.image_path or "missing")
    assert stored.read_bytes() == image
    assert vigil.count(Submission) == 2, "no new screening"


def test_an_approved_reported_image_is_not_kept(vigil: Vigil) -> None:
    image = photo(15)
    submission_id = vigil.publish(15)
    for reporter in ("a", "b", "c"):
        document = {"reporter_id": reporter, "reporter_trust": "basic", "reason": "sexual"}
        assert vigil.report_image(image, document).status_code == 200
    kept_while_pending = has_stored_copy(vigil.runtime, submission_id)

    vigil.decide(submission_id, "allow")

    assert kept_while_pending
    assert not has_stored_copy(vigil.runtime, submission_id)


def test_a_report_of_an_image_vigil_never_saw_screens_it_first(vigil: Vigil) -> None:
    image = photo(16)
    context = {"uploader_id": "stranger", "ref": "post-16"}

    body = vigil.report_image(
        image,
        {"reporter_id": "member", "reporter_trust": "basic", "reason": "child_abuse"},
        context,
    ).json()

    assert body["screened"] is True
    assert body["hide_requested"] is True
    state = vigil.submission(body["submission_id"])
    assert (state["uploader_id"], state["ref"]) == ("stranger", "post-16")
    assert state["initial_decision"] == "allow"
    assert (state["decision"], state["review"], state["priority"]) == ("hold", "pending", "urgent")
    assert has_stored_copy(vigil.runtime, body["submission_id"])
    assert len(vigil.audited("submission.screened")) == 1
    repeat = vigil.report_image(image, {"reporter_id": "other", "reason": "spam"}).json()
    assert (repeat["submission_id"], repeat["screened"]) == (body["submission_id"], False)


def test_a_report_naming_a_submission_and_sending_its_image_is_accepted(vigil: Vigil) -> None:
    image = photo(17)
    submission_id = vigil.publish(17)

    body = vigil.report_image(
        image, {"submission_id": submission_id, "reporter_id": "m", "reason": "spam"}
    )

    assert body.status_code == 200, body.text
    assert body.json()["submission_id"] == submission_id
    assert has_stored_copy(vigil.runtime, submission_id)


def test_a_site_cannot_report_another_sites_submission(vigil: Vigil) -> None:
    image = photo(18)
    theirs = vigil.publish(18)
    _, other_site = site_key(vigil.runtime, "other-forum", Role.SCREEN)

    by_id = vigil.report(theirs, "member", headers=other_site)
    by_image = vigil.report_image(
        image, {"reporter_id": "member", "reason": "spam"}, headers=other_site
    )
    naming_it = vigil.report_image(
        image,
        {"submission_id": theirs, "reporter_id": "member", "reason": "spam"},
        headers=other_site,
    )

    assert by_id.status_code == 404
    assert "no submission" in by_id.json()["error"]["message"]
    assert naming_it.status_code == 404
    assert by_image.status_code == 200
    assert by_image.json()["submission_id"] != theirs, "the other site's image is screened anew"
    assert vigil.count(Report, Report.submission_id == theirs) == 0


START = datetime(2030, 3, 1, 23, 0, tzinfo=UTC)


@dataclass
class Watched:
    """A Vigil on a clock the test moves, with the lockdown monitor the worker would run."""

    vigil: Vigil
    clock: ManualClock
    monitor: LockdownMonitor

    def level(self) -> LockdownLevel:
        """The site's lockdown level once the monitor has measured the rules."""
        self.monitor.tick()
        runtime = self.vigil.runtime
        with runtime.database.session() as session:
            site = get_site(session, BOOTSTRAP_SITE)
            return control.conditions_for(
                session, runtime.settings, site.id, self.clock.now()
            ).level


@pytest.fixture
def watched(open_vigil: Callable[..., Vigil]) -> Watched:
    clock = ManualClock(START)
    vigil = open_vigil(clock, lockdown={"rules": [REPORT_RULE]})
    return Watched(
        vigil, clock, LockdownMonitor(vigil.runtime.database, vigil.runtime.settings, clock)
    )


def test_reports_count_towards_the_report_lockdown_rule(watched: Watched) -> None:
    vigil, clock = watched.vigil, watched.clock
    images = [vigil.publish(seed) for seed in (20, 21, 22)]

    vigil.report(images[0], "a")
    clock.advance(minutes=4)
    vigil.report(images[1], "b")
    after_two = watched.level()
    clock.advance(minutes=4)
    vigil.report(images[2], "c")
    after_three = watched.level()

    assert after_two is LockdownLevel.NORMAL
    assert after_three is LockdownLevel.NEW_ACCOUNTS_HELD
    with vigil.runtime.database.session() as session:
        reports = session.scalars(select(Report).order_by(Report.id)).all()
        assert [report.created_at for report in reports] == [
            START + timedelta(minutes=minutes) for minutes in (0, 4, 8)
        ], "reports are timed by Vigil's clock"
        assert audit.events_for(session, images[2])[-1].at == clock.now()


def test_reports_further_apart_than_the_window_do_not_raise_the_level(watched: Watched) -> None:
    for seed, reporter in zip((23, 24, 25), "abc", strict=True):
        watched.vigil.report(watched.vigil.publish(seed), reporter)
        watched.clock.advance(minutes=6)

    assert watched.level() is LockdownLevel.NORMAL


def test_on_a_replay_clock_reports_before_an_approval_no_longer_count(
    open_vigil: Callable[..., Vigil],
) -> None:
    clock = ManualClock(START)
    vigil = open_vigil(clock)
    submission_id = vigil.publish(26)
    for reporter in ("a", "b", "c"):
        vigil.report(submission_id, reporter)
    clock.advance(minutes=5)
    vigil.decide(submission_id, "allow")
    clock.advance(minutes=5)

    body = vigil.report(submission_id, "d").json()

    assert (body["total_weight"], body["decision"]) == (1, "allow")


# --- bad input ------------------------------------------------------------------------------------

GOOD = {"reporter_id": "member", "reason": "spam"}


def _json(**changes: Any) -> Callable[[Vigil, str], httpx.Response]:
    def send(vigil: Vigil, submission_id: str) -> httpx.Response:
        document = {"submission_id": submission_id, **GOOD, **changes}
        return vigil.post_report(
            json={key: value for key, value in document.items() if value is not None}
        )

    return send


def _raw(content: bytes, content_type: str) -> Callable[[Vigil, str], httpx.Response]:
    def send(vigil: Vigil, _submission_id: str) -> httpx.Response:
        headers = {**vigil.headers, "Content-Type": content_type}
        return vigil.post_report(headers, content=content)

    return send


def _form(image: bytes | None = None, **fields: str) -> Callable[[Vigil, str], httpx.Response]:
    def send(vigil: Vigil, submission_id: str) -> httpx.Response:
        # Text fields as parts without a file name: multipart even when no image is sent.
        parts: dict[str, tuple[str | None, bytes | str, str | None]] = {
            name: (None, value.replace("{id}", submission_id), None)
            for name, value in fields.items()
        }
        if image is not None:
            parts["image"] = ("x.jpg", image, "image/jpeg")
        return vigil.post_report(files=parts)

    return send


def _truncated(vigil: Vigil, submission_id: str) -> httpx.Response:
    """The image part and the closing boundary never arrive."""
    report = json.dumps({"submission_id": submission_id, **GOOD})
    body = (
        b"--cut\r\n"
        b'Content-Disposition: form-data; name="report"\r\n\r\n'
        + report.encode()
        + b"\r\n--cut\r\n"
        b'Content-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + photo(30)[:500]
    )
    headers = {**vigil.headers, "Content-Type": "multipart/form-data; boundary=cut"}
    return vigil.post_report(headers, content=body)


def _unauthenticated(vigil: Vigil, submission_id: str) -> httpx.Response:
    return vigil.post_report({}, json={"submission_id": submission_id, **GOOD})


REPORT_ONLY = json.dumps(GOOD)
BAD_REQUESTS: dict[str, tuple[Callable[[Vigil, str], httpx.Response], int, str]] = {
    "unknown reason": (_json(reason="ugly"), 422, "reason"),
    "unknown trust level": (_json(reporter_trust="admin"), 422, "reporter_trust"),
    "NUL in the note": (_json(note="bad\x00note"), 422, "note"),
    "note too long": (_json(note="x" * 2001), 422, "note"),
    "no reporter id": (_json(reporter_id=None), 422, "reporter_id"),
    "empty reporter id": (_json(reporter_id=""), 422, "reporter_id"),
    "reporter id a number": (_json(reporter_id=7), 422, "reporter_id"),
    "unknown field": (_json(severity="high"), 422, "severity"),
    "no submission id": (_json(submission_id=None), 422, "submission_id"),
    "unknown submission": (_json(submission_id="0" * 36), 404, "no submission"),
    "NUL in the submission id": (_json(submission_id="a\x00b"), 422, "submission_id"),
    "garbage JSON": (_raw(b"{reporter: ", "application/json"), 422, "not valid JSON"),
    "JSON not an object": (_raw(b"[1, 2]", "application/json"), 422, "JSON object"),
    "not UTF-8": (_raw(b'{"reporter_id": "\xff\xfe"}', "application/json"), 422, "JSON"),
    "deeply nested JSON": (_raw(b"[" * 100_000, "application/json"), 422, "JSON"),
    "plain text": (_raw(b"report it", "text/plain"), 415, "application/json"),
    "no content type": (_raw(b"{}", ""), 415, "multipart/form-data"),
    "url-encoded form": (
        _raw(b"reporter_id=x", "application/x-www-form-urlencoded"),
        415,
        "application/json",
    ),
    "multipart without a boundary": (_raw(b"--x--", "multipart/form-data"), 400, "boundary"),
    "truncated multipart": (_truncated, 400, "cut off"),
    "form without image or id": (_form(report=REPORT_ONLY), 400, "image"),
    "form without a report": (_form(image=photo(31)), 400, "report"),
    "form with an unknown field": (
        _form(image=photo(31), report=REPORT_ONLY, extra="1"),
        400,
        "extra",
    ),
    "form report not JSON": (_form(image=photo(31), report="{"), 422, "report"),
    "form with bad context": (
        _form(image=photo(31), report=REPORT_ONLY, context='{"trust_level": "god"}'),
        422,
        "trust_level",
    ),
    "image that is not an image": (
        _form(image=b"<html>not a picture</html>", report=REPORT_ONLY),
        400,
        "",
    ),
    "empty image": (_form(image=b"", report=REPORT_ONLY), 400, "empty"),
    "image of another submission": (
        _form(
            image=photo(32),
            report=json.dumps({"submission_id": "{id}", **GOOD}),
        ),
        400,
        "SHA-256",
    ),
    "no API key": (_unauthenticated, 401, "API key"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_a_bad_report_is_refused_with_a_message_and_changes_nothing(
    vigil: Vigil, case: str
) -> None:
    send, status, mentions = BAD_REQUESTS[case]
    submission_id = vigil.publish(33)
    submissions_before = vigil.count(Submission)

    response = send(vigil, submission_id)

    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert message
    assert mentions in message
    assert vigil.count(Report) == 0
    assert vigil.count(SiteSignal, SiteSignal.kind == SignalKind.REPORT.value) == 0
    assert vigil.count(Submission) == submissions_before
    assert vigil.audited("report.received") == []


def test_a_report_with_an_oversized_image_is_refused(open_vigil: Callable[..., Vigil]) -> None:
    vigil = open_vigil(intake={"max_bytes": 2000})
    response = vigil.report_image(b"\xff\xd8" + b"\0" * 5000, GOOD)

    assert response.status_code == 413, response.text
    assert vigil.count(Report) == 0


def test_the_api_description_documents_both_forms(vigil: Vigil) -> None:
    schema = vigil.client.get("/openapi.json").json()
    body = schema["paths"]["/v1/reports"]["post"]["requestBody"]["content"]

    assert set(body) == {"application/json", "multipart/form-data"}
    reasons = body["application/json"]["schema"]["properties"]["reason"]
    assert "child_abuse" in json.dumps(reasons)
    assert "$defs" not in json.dumps(body)
