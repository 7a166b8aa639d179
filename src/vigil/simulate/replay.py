"""Play a scenario against a fresh Vigil on a simulated clock.

The instance is real: SQLite in a throw-away folder, the configured models, the HTTP API (called
in-process), the lockdown watch and the page deliverer. Around it the replay plays everyone else:
the site (publishes on ``allow``, hides on webhooks, bans suspended accounts), its members (post,
report), its moderators (work the review queue while on shift) and on-call staff (acknowledge
pages after a while, or never). Only pages are not sent: they are recorded where they would go.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from vigil.actions import incidents
from vigil.actions.channels import PageMessage
from vigil.actions.incidents import PageEvent
from vigil.actions.uploaders import clean_up_uploaders
from vigil.api import create_app
from vigil.clock import ManualClock
from vigil.config import ChannelSettings
from vigil.intake import open_image
from vigil.lockdown.monitor import LockdownMonitor
from vigil.matching import admin
from vigil.matching.banks import BankAction
from vigil.review import accounts, queue
from vigil.review.accounts import UserRole
from vigil.review.web import Reviewer
from vigil.runtime import Runtime
from vigil.signals import compute_signals, default_hashers
from vigil.signals.base import HashType
from vigil.simulate import images
from vigil.simulate.scenario import Moderator, Scenario
from vigil.store import banks as bank_store
from vigil.store import leases, outbox, sites
from vigil.store.models import AuditEvent, Incident, Site, Submission, WebhookDelivery
from vigil.workers.pages import PageDeliverer

with warnings.catch_warnings():
    # Starlette asks for an httpx fork in its test client; the replay only needs an in-process
    # client, and the notice would end up in every replay's output.
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient

log = logging.getLogger(__name__)

SITE_NAME = "forum"
# Webhooks are written to the outbox for this address but read from there by the replay's site.
SITE_WEBHOOK = "http://127.0.0.1:9/replayed-site"


@dataclass
class PostedImage:
    """One upload and what became of it."""

    number: int
    at: datetime
    account: str
    image_set: str
    index: int
    abusive: bool
    known: bool  # its set is in a bank
    submission_id: str | None = None
    decision: str = ""
    reasons: list[str] = field(default_factory=list)
    published_at: datetime | None = None  # currently visible since
    first_visible_at: datetime | None = None
    visible_seconds: float = 0.0
    hidden_by: str | None = None
    reports: int = 0

    @property
    def ever_visible(self) -> bool:
        return self.first_visible_at is not None


@dataclass(frozen=True)
class LevelChange:
    at: datetime
    level: int
    previous: int
    source: str
    cause: dict[str, Any]


@dataclass(frozen=True)
class PageRecord:
    at: datetime
    channel: str
    event: str
    incident_id: int
    kind: str
    tier: int
    title: str


@dataclass(frozen=True)
class Acknowledgement:
    at: datetime
    incident_id: int
    by: str


@dataclass
class ReplayResult:
    scenario: Scenario
    images: list[PostedImage]
    level_changes: list[LevelChange]
    pages: list[PageRecord]
    acknowledgements: list[Acknowledgement]
    prevented_posts: int  # posts by accounts the site had already banned
    reports_sent: int
    moderator_decisions: int
    audit: list[dict[str, Any]]


class Replay:
    def __init__(
        self,
        scenario: Scenario,
        data_dir: Path,
        *,
        progress: Callable[[datetime], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.clock = ManualClock(scenario.start_utc)
        self.settings = scenario.vigil_settings(data_dir)
        self.progress = progress
        self._events: list[tuple[datetime, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._images: list[PostedImage] = []
        self._by_submission: dict[str, PostedImage] = {}
        self._banned: set[str] = set()
        self._level_changes: list[LevelChange] = []
        self._pages: list[PageRecord] = []
        self._acks: list[Acknowledgement] = []
        self._prevented = 0
        self._reports_sent = 0
        self._decisions = 0
        self._busy_until: dict[str, datetime] = {}
        self._reviewers: dict[str, Reviewer] = {}
        self._member_turn = itertools.count()
        self._acknowledging: set[tuple[str, int]] = set()

    # --- set-up ----------------------------------------------------------------------------

    def run(self) -> ReplayResult:
        runtime = Runtime.open(self.settings, clock=self.clock)
        try:
            key = self._prepare(runtime)
            with TestClient(create_app(runtime), base_url="http://vigil.replay") as client:
                client.headers["Authorization"] = f"Bearer {key}"
                self._client = client
                self._runtime = runtime
                self._monitor = LockdownMonitor(runtime.database, self.settings, self.clock)
                self._pager = PageDeliverer(
                    runtime.database,
                    self.settings,
                    self.clock,
                    runtime.metrics,
                    sender=self._record_page,
                )
                try:
                    self._schedule()
                    self._play()
                finally:
                    self._pager.close()
            return self._result(runtime)
        finally:
            runtime.close()

    def _prepare(self, runtime: Runtime) -> str:
        with runtime.database.write_session() as session:
            site = sites.get_or_create_site(session, SITE_NAME)
            sites.set_webhook(site, SITE_WEBHOOK, rotate_secret=True)
            _, key = sites.create_api_key(session, site, sites.Role.SCREEN)
            for moderator in self.scenario.moderators:
                user = accounts.create_user(
                    session,
                    moderator.name,
                    UserRole(moderator.role),
                    secrets.token_urlsafe(16),
                    actor="replay",
                )
                session.flush()
                self._reviewers[moderator.name] = Reviewer(
                    user.id, user.name, UserRole(moderator.role), True, ""
                )
        self._import_banks(runtime)
        return key

    def _import_banks(self, runtime: Runtime) -> None:
        """Known sets: their originals' PDQ hashes go into the named block banks."""
        byte_hashers, frame_hashers = default_hashers()
        wanted: dict[str, list[str]] = {}
        for image_set in self.scenario.image_sets:
            if image_set.in_bank is None:
                continue
            values = wanted.setdefault(image_set.in_bank, [])
            for index in range(image_set.count):
                picture = open_image(
                    images.original(image_set.seed + index), runtime.settings.intake
                )
                signals = compute_signals(picture, byte_hashers, frame_hashers)
                values.extend(frame.value for frame in signals.frame_hashes)
        for name, values in wanted.items():
            admin.create_bank(
                runtime.database,
                runtime.settings.matching,
                name=name,
                hash_type=HashType.PDQ,
                action=BankAction.BLOCK,
                threshold=None,
                enabled=True,
                description="stand-in hashes for the replay",
                actor="replay",
            )
            with runtime.database.write_session() as session:
                bank_store.add_hashes(session, bank_store.get_bank(session, name), values)
        runtime.matcher.refresh()

    def _schedule(self) -> None:
        scenario = self.scenario
        for number, post in enumerate(scenario.posts):
            image_set = scenario.image_set(post.set)
            indexes = post.images if post.images is not None else list(range(image_set.count))
            start = scenario.moment(post.at)
            for offset, index in enumerate(indexes):
                at = start + timedelta(seconds=post.interval_seconds * offset)
                self._at(
                    at, self._poster(post.account, post.set, index, nonce=number * 1000 + offset)
                )
        members = [
            f"{scenario.members.prefix}-{number:03d}"
            for number in range(1, scenario.members.count + 1)
        ]
        for traffic in scenario.traffic:
            image_set = scenario.image_set(traffic.set)
            at = scenario.moment(traffic.start) if traffic.start else scenario.start_utc
            end = scenario.moment(traffic.end) if traffic.end else scenario.end_utc
            for turn in itertools.count():
                if at >= end:
                    break
                member = members[turn % len(members)]
                self._at(at, self._poster(member, traffic.set, turn % image_set.count, nonce=turn))
                at += timedelta(seconds=traffic.every_seconds)

    def _at(self, moment: datetime, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (moment, next(self._sequence), action))

    # --- the loop --------------------------------------------------------------------------

    def _play(self) -> None:
        tick = timedelta(seconds=self.scenario.tick_seconds)
        next_tick = self.scenario.start_utc
        end = self.scenario.end_utc
        while True:
            event_due = self._events[0][0] if self._events else None
            if event_due is not None and event_due < next_tick:
                if event_due > end:
                    break
                moment, _, action = heapq.heappop(self._events)
                self.clock.set(max(moment, self.clock.now()))
                action()
                continue
            if next_tick > end:
                break
            self.clock.set(next_tick)
            self._tick()
            if self.progress is not None:
                self.progress(next_tick)
            next_tick += tick
        self.clock.set(max(end, self.clock.now()))
        for image in self._images:
            self._hide(image, "")  # close the visible interval at the end

    def _tick(self) -> None:
        self._monitor.tick()
        self._pager.deliver_due()
        self._site_reads_webhooks()
        for moderator in self.scenario.moderators:
            self._moderate(moderator)

    # --- members -----------------------------------------------------------------------------

    def _poster(self, account: str, set_name: str, index: int, *, nonce: int) -> Callable[[], None]:
        def post() -> None:
            self._post(account, set_name, index, nonce)

        return post

    def _post(self, account: str, set_name: str, index: int, nonce: int) -> None:
        if account in self._banned:
            self._prevented += 1
            return
        image_set = self.scenario.image_set(set_name)
        now = self.clock.now()
        image = PostedImage(
            number=len(self._images) + 1,
            at=now,
            account=account,
            image_set=set_name,
            index=index,
            abusive=image_set.abusive,
            known=image_set.in_bank is not None,
        )
        self._images.append(image)
        data = images.posted_copy(image_set.seed + index, image_set.variant, nonce)
        context = {**self._account_context(account), "ref": f"post-{image.number}"}
        response = self._client.post(
            "/v1/screen",
            files={"image": (f"{image.number}.jpg", data, "image/jpeg")},
            data={"context": json.dumps(context)},
        )
        if response.status_code != 200:
            image.decision = f"error {response.status_code}"
            return
        body = response.json()
        image.submission_id = body["submission_id"]
        image.decision = "paused" if body.get("uploads_paused") else body["decision"]
        image.reasons = [
            reason["code"] for reason in body["reasons"] if reason["verdict"] != "allow"
        ]
        self._by_submission[image.submission_id] = image
        if body["decision"] == "allow":
            self._publish(image)

    def _account_context(self, account: str) -> dict[str, Any]:
        scenario = self.scenario
        known = next((a for a in scenario.accounts if a.id == account), None)
        trust, age = (
            (known.trust, known.age_days)
            if known
            else (scenario.members.trust, scenario.members.age_days)
        )
        created = scenario.start_utc - timedelta(days=age)
        return {
            "uploader_id": account,
            "trust_level": trust,
            "account_created_at": created.isoformat(),
        }

    def _publish(self, image: PostedImage) -> None:
        if image.published_at is not None:
            return
        now = self.clock.now()
        image.published_at = now
        image.hidden_by = None
        if image.first_visible_at is None:
            image.first_visible_at = now
            self._schedule_reports(image)

    def _hide(self, image: PostedImage, by: str) -> None:
        if image.published_at is None:
            return
        image.visible_seconds += (self.clock.now() - image.published_at).total_seconds()
        image.published_at = None
        image.hidden_by = by or image.hidden_by

    def _schedule_reports(self, image: PostedImage) -> None:
        for rule in self.scenario.reports:
            if rule.set != image.image_set:
                continue
            for number in range(rule.reporters):
                at = self.clock.now() + timedelta(
                    minutes=rule.first_after_minutes + number * rule.spacing_minutes
                )
                reporter = f"reporter-{next(self._member_turn):04d}"

                def report(
                    image: PostedImage = image, reporter: str = reporter, rule: Any = rule
                ) -> None:
                    self._report(image, reporter, rule.trust, rule.reason)

                self._at(at, report)

    def _report(self, image: PostedImage, reporter: str, trust: str, reason: str) -> None:
        if image.published_at is None or image.submission_id is None:
            return  # nobody can report what they cannot see
        response = self._client.post(
            "/v1/reports",
            json={
                "submission_id": image.submission_id,
                "reporter_id": reporter,
                "reporter_trust": trust,
                "reason": reason,
            },
        )
        if response.status_code != 200:
            log.warning("report refused: %s %s", response.status_code, response.text)
            return
        self._reports_sent += 1
        image.reports += 1
        if response.json().get("hidden"):
            self._hide(image, "reports")

    # --- the site ------------------------------------------------------------------------------

    def _site_reads_webhooks(self) -> None:
        now = self.clock.now()
        read_before = now - timedelta(seconds=self.scenario.site_delay_seconds)
        with self._runtime.database.session() as session:
            due = session.scalars(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.status == leases.PENDING,
                    WebhookDelivery.created_at <= read_before,
                )
                .order_by(WebhookDelivery.id)
            ).all()
            for delivery in due:
                self._site_acts(json.loads(delivery.body))
                outbox.record_success(session, delivery.id, now)

    def _site_acts(self, event: dict[str, Any]) -> None:
        data = event["data"]
        kind = event["type"]
        if kind == "submission.decided":
            image = self._by_submission.get(data["submission_id"])
            if image is not None and data["decision"] == "allow":
                self._publish(image)
            elif image is not None:
                self._hide(image, "moderator")
        elif kind == "submission.hide_requested":
            image = self._by_submission.get(data["submission_id"])
            if image is not None:
                self._hide(image, "reports")
        elif kind == "uploader.takedown_requested":
            for item in data["submissions"]:
                image = self._by_submission.get(item["submission_id"])
                if image is not None:
                    self._hide(image, "clean-up")
        elif kind == "uploader.suspended":
            self._banned.add(data["uploader_id"])
        elif kind == "lockdown.changed":
            self._level_changes.append(
                LevelChange(
                    datetime.fromisoformat(data["changed_at"]),
                    data["level"],
                    data["previous_level"],
                    data["source"],
                    data.get("cause") or {},
                )
            )

    # --- moderators and on-call staff -------------------------------------------------------------

    def _moderate(self, moderator: Moderator) -> None:
        now = self.clock.now()
        start, end = self.scenario.moment(moderator.start), self.scenario.moment(moderator.end)
        if end <= start:
            end += timedelta(days=1)
        if not start <= now < end or self._busy_until.get(moderator.name, start) > now:
            return
        reviewer = self._reviewers[moderator.name]
        settings = self.settings
        released = None
        with self._runtime.database.write_session() as session:
            submission_id = queue.claim_next(session, reviewer, now, settings.review.claim_minutes)
            if submission_id is None:
                return
            submission = session.get(Submission, submission_id)
            site = session.get(Site, submission.site_id) if submission else None
            if submission is None or site is None:
                return
            image = self._by_submission.get(submission_id)
            abusive = image is not None and image.abusive
            if not abusive:
                action = queue.ReviewAction.APPROVE
            elif reviewer.may(accounts.Permission.CHILD_SAFETY):
                action = queue.ReviewAction.ILLEGAL
            else:
                action = queue.ReviewAction.REJECT
            released = queue.decide(
                session,
                submission,
                site,
                reviewer,
                action,
                settings,
                self._runtime.vault,
                self._runtime.images,
                note="replay",
                now=now,
            )
            if abusive and moderator.clean_up_uploaders and submission.uploader_id:
                clean_up_uploaders(
                    session,
                    site,
                    [submission.uploader_id],
                    reason="posted abuse imagery during an attack",
                    actor=reviewer.actor,
                    now=now,
                )
        if released:
            self._runtime.images.delete(released)
        self._decisions += 1
        self._busy_until[moderator.name] = now + timedelta(seconds=moderator.seconds_per_item)

    def _record_page(self, channel: ChannelSettings, message: PageMessage) -> None:
        now = self.clock.now()
        self._pages.append(
            PageRecord(
                now,
                channel.name,
                message.event.value,
                message.incident_id,
                message.kind,
                message.tier,
                message.title,
            )
        )
        if message.event is not PageEvent.TRIGGER:
            return
        for person in self.scenario.oncall:
            if channel.name not in person.channels or person.acknowledges_after_minutes is None:
                continue
            if (person.name, message.incident_id) in self._acknowledging:
                continue
            self._acknowledging.add((person.name, message.incident_id))
            at = now + timedelta(minutes=person.acknowledges_after_minutes)

            def acknowledge(
                incident_id: int = message.incident_id, name: str = person.name
            ) -> None:
                self._acknowledge(incident_id, name)

            self._at(at, acknowledge)

    def _acknowledge(self, incident_id: int, name: str) -> None:
        now = self.clock.now()
        with self._runtime.database.write_session() as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                return
            if incidents.acknowledge(session, self.settings.paging, incident, f"link:{name}", now):
                self._acks.append(Acknowledgement(now, incident_id, name))

    # --- the result ----------------------------------------------------------------------------

    def _result(self, runtime: Runtime) -> ReplayResult:
        with runtime.database.session() as session:
            audit = [
                {
                    "at": event.at,
                    "actor": event.actor,
                    "action": event.action,
                    "subject": event.subject,
                    "details": event.details,
                }
                for event in session.scalars(
                    select(AuditEvent)
                    .where(
                        AuditEvent.action.like("lockdown.%")
                        | AuditEvent.action.like("incident.%")
                        | AuditEvent.action.like("uploader.%")
                    )
                    .order_by(AuditEvent.at, AuditEvent.id)
                ).all()
            ]
        return ReplayResult(
            self.scenario,
            self._images,
            self._level_changes,
            self._pages,
            self._acks,
            self._prevented,
            self._reports_sent,
            self._decisions,
            audit,
        )
