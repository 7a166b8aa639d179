"""Lockdown tests: one site on a real runtime whose clock the test moves, and what it recorded.

A test that opens a site runs twice: on the embedded SQLite and on PostgreSQL. Nothing delivers
webhooks or pages here; the outbox rows, audit entries and incidents are what is checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.images import encode, make_photo
from tests.onnx_models import constant_model
from vigil.actions.incidents import IncidentKind
from vigil.clock import ManualClock
from vigil.config import Settings, load_settings
from vigil.lockdown import control
from vigil.lockdown.control import SiteLockdown
from vigil.lockdown.kinds import SignalKind
from vigil.lockdown.levels import SiteConditions
from vigil.lockdown.monitor import LockdownMonitor
from vigil.policy import TrustLevel, UploaderContext
from vigil.runtime import Runtime
from vigil.screening import ScreeningOutcome
from vigil.store.models import AuditEvent, Incident, Site, SiteSignal, WebhookDelivery
from vigil.store.sites import SiteRef, get_or_create_site, set_webhook

# A Wednesday at noon. London keeps GMT in January, so there local time is UTC.
START = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
SITE_NAME = "forum"
ADMIN = "admin:alice"
# Never contacted (no worker runs); a site with a webhook URL gets outbox rows.
WEBHOOK_URL = "http://127.0.0.1:9/vigil-hook"
# What the tiny classifier's single label is called, and what its scores do.
LABEL = "nsfw"
LABEL_POLICY = {"labels": {LABEL: {"hold": 0.4, "block": 0.9}}}


def rule(signal: SignalKind, at_least: float, window_minutes: float, level: int) -> dict[str, Any]:
    """One ``lockdown.rules`` entry, as vigil.toml would give it."""
    return {
        "signal": signal.value,
        "at_least": at_least,
        "window_minutes": window_minutes,
        "level": level,
    }


def photo(seed: int) -> bytes:
    """A generated photo as JPEG; every seed is a different picture."""
    return encode(make_photo(seed=seed), "JPEG", quality=90)


def copy_of(seed: int, number: int) -> bytes:
    """The picture of ``photo(seed)`` resized and re-encoded: other bytes, so another SHA-256,
    but the same picture to PDQ. Each ``number`` gives different bytes."""
    image = make_photo(seed=seed)
    width, height = image.size
    shrink = 8 * (number + 1)
    smaller = image.resize((width - shrink, height - shrink * 3 // 4))
    return encode(smaller, "JPEG", quality=80 - number)


def scoring_classifiers(folder: Path, score: float) -> dict[str, Any]:
    """Classifier settings with one tiny model that scores every image ``score`` for LABEL
    (the built-in models are off: they are slow and their scores are not ours to choose)."""
    model = constant_model(folder / f"constant-{score}.onnx", [score])
    return {
        "opennsfw": False,
        "face_age": False,
        "custom": [
            {
                "name": "constant",
                "path": str(model),
                "labels": [LABEL],
                "mean": [0, 0, 0],
                "std": [1, 1, 1],
            }
        ],
    }


@dataclass
class WatchedSite:
    """One site, its runtime, the clock and the lockdown monitor, with what tests ask of them."""

    runtime: Runtime
    clock: ManualClock
    site: SiteRef
    monitor: LockdownMonitor

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def upload(
        self,
        data: bytes,
        uploader: str | None = "member",
        *,
        trust: TrustLevel | None = TrustLevel.BASIC,
        account_days: float | None = 400.0,
    ) -> ScreeningOutcome:
        """Screen ``data`` now, from an account ``account_days`` old (None: age not given)."""
        created = None if account_days is None else self.clock.now() - timedelta(days=account_days)
        return self.runtime.screening.screen(
            self.site,
            data,
            UploaderContext(uploader_id=uploader, account_created_at=created, trust_level=trust),
            idempotency_key=None,
            actor="test",
        )

    def upload_from_new_account(self, data: bytes, uploader: str = "newcomer") -> ScreeningOutcome:
        return self.upload(data, uploader, trust=TrustLevel.NEW, account_days=0.1)

    def tick(self) -> int:
        return self.monitor.tick()

    def conditions(self) -> SiteConditions:
        with self.runtime.database.session() as session:
            return control.conditions_for(session, self.settings, self.site.id, self.clock.now())

    def level(self) -> int:
        return int(self.conditions().level)

    def describe(self) -> SiteLockdown:
        with self.runtime.database.session() as session:
            site = session.get(Site, self.site.id)
            assert site is not None
            return control.describe(session, self.settings, site, self.clock.now())

    def measured(self, signal: SignalKind) -> float:
        """What the first rule on ``signal`` measures now."""
        return next(
            measure for rule, measure, _ in self.describe().measures if rule.signal is signal
        )

    def set_level(self, level: int, *, hours: float | None, reason: str = "drill") -> bool:
        now = self.clock.now()
        with self.runtime.database.write_session() as session:
            site = session.get(Site, self.site.id)
            assert site is not None
            until = None if hours is None else now + timedelta(hours=hours)
            return control.set_level(
                session,
                self.settings,
                site,
                level,
                until=until,
                reason=reason,
                actor=ADMIN,
                now=now,
            )

    def clear(self, reason: str = "looked at every image") -> bool:
        with self.runtime.database.write_session() as session:
            site = session.get(Site, self.site.id)
            assert site is not None
            return control.clear(
                session, self.settings, site, reason=reason, actor=ADMIN, now=self.clock.now()
            )

    def audit(self, action: str) -> list[AuditEvent]:
        """The audit entries of ``action``, oldest first."""
        with self.runtime.database.session() as session:
            return list(
                session.scalars(
                    select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
                ).all()
            )

    def webhooks(self, event_type: str) -> list[dict[str, Any]]:
        """The ``data`` of every outbox row of ``event_type``, oldest first."""
        with self.runtime.database.session() as session:
            bodies = session.scalars(
                select(WebhookDelivery.body)
                .where(
                    WebhookDelivery.site_id == self.site.id,
                    WebhookDelivery.event_type == event_type,
                )
                .order_by(WebhookDelivery.id)
            ).all()
        return [json.loads(body)["data"] for body in bodies]

    def incidents(self, kind: IncidentKind) -> list[Incident]:
        with self.runtime.database.session() as session:
            return list(
                session.scalars(
                    select(Incident)
                    .where(Incident.site_id == self.site.id, Incident.kind == kind.value)
                    .order_by(Incident.id)
                ).all()
            )

    def signal_rows(self, kind: str | None = None) -> int:
        with self.runtime.database.session() as session:
            query = select(func.count()).select_from(SiteSignal)
            if kind is not None:
                query = query.where(SiteSignal.kind == kind)
            return int(session.scalar(query) or 0)


OpenSite = Callable[..., WatchedSite]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded SQLite, else a fresh PostgreSQL schema (skipped if unreachable)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return None


@pytest.fixture
def open_site(tmp_path: Path, database_url: str | None) -> Iterator[OpenSite]:
    """``open_site(*rules, start=, webhook=, classifiers=, policy=, paging=, **lockdown)``: a
    runtime on a manual clock with exactly these lockdown rules, and one site."""
    with ExitStack() as opened:

        def open_(
            *rules: dict[str, Any],
            start: datetime = START,
            webhook: bool = False,
            classifiers: dict[str, Any] | None = None,
            policy: dict[str, Any] | None = None,
            paging: dict[str, Any] | None = None,
            **lockdown: Any,
        ) -> WatchedSite:
            overrides: dict[str, Any] = {
                "lockdown": {"rules": list(rules), **lockdown},
                "classifiers": classifiers or {"opennsfw": False, "face_age": False},
            }
            if policy is not None:
                overrides["policy"] = policy
            if paging is not None:
                overrides["paging"] = paging
            if database_url is not None:
                overrides["database_url"] = database_url
            settings = load_settings(data_dir=tmp_path / "data", **overrides)
            clock = ManualClock(start)
            runtime = Runtime.open(settings, clock=clock)
            opened.callback(runtime.close)
            with runtime.database.session() as session:
                site = get_or_create_site(session, SITE_NAME)
                if webhook:
                    set_webhook(site, WEBHOOK_URL, rotate_secret=True)
                reference = SiteRef(site.id, site.name)
            return WatchedSite(
                runtime, clock, reference, LockdownMonitor(runtime.database, settings, clock)
            )

        yield open_
