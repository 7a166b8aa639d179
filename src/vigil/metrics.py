"""Prometheus metrics: decisions, screening latency, refusals, webhook outcomes, bank sizes."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from vigil.policy import Priority
from vigil.signals.classifiers import ClassifierReport
from vigil.store.database import Database
from vigil.store.models import Bank, Incident, LockdownState, Site, Submission

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """One registry per process (a fresh one per app in tests)."""

    def __init__(self, database: Database) -> None:
        self.registry = CollectorRegistry()
        self.submissions = Counter(
            "vigil_submissions",
            "Screened submissions by decision.",
            ["decision"],
            registry=self.registry,
        )
        self.refused = Counter(
            "vigil_refused_uploads",
            "Uploads refused at intake, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.unavailable = Counter(
            "vigil_screening_unavailable",
            "Screenings that failed closed (HTTP 503).",
            registry=self.registry,
        )
        self.reviews = Counter(
            "vigil_review_decisions",
            "Moderator decisions on held submissions.",
            ["decision"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "vigil_webhook_attempts",
            "Webhook delivery attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.page_attempts = Counter(
            "vigil_page_attempts",
            "On-call page delivery attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.screening_seconds = Histogram(
            "vigil_screening_seconds",
            "Time to screen one upload (decode, hash, match, record).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.classifier_seconds = Histogram(
            "vigil_classifier_seconds",
            "Time one model took on one image.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.classifier_failures = Counter(
            "vigil_classifier_failures",
            "Images a model could not classify (each one held), by model and kind.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.registry.register(_DatabaseGauges(database))

    def record_classification(self, report: ClassifierReport | None) -> None:
        if report is None:
            return
        for result in report.results:
            self.classifier_seconds.labels(result.model).observe(result.seconds)
        for failure in report.failures:
            self.classifier_failures.labels(failure.model, failure.kind.value).inc()


class _DatabaseGauges(Collector):
    """Read at scrape time, so every process reports the same shared numbers."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sizes = GaugeMetricFamily(
            "vigil_bank_hashes",
            "Hashes in each bank.",
            labels=["bank", "hash_type", "action", "enabled"],
        )
        pending = GaugeMetricFamily(
            "vigil_review_pending",
            "Submissions awaiting a moderator, by priority.",
            labels=["priority"],
        )
        levels = GaugeMetricFamily(
            "vigil_lockdown_level",
            "Each site's lockdown level as last announced (0 normal - 3 uploads paused).",
            labels=["site"],
        )
        incidents = GaugeMetricFamily(
            "vigil_incidents_open",
            "Open incidents, by kind and whether someone acknowledged them.",
            labels=["kind", "acknowledged"],
        )
        try:
            with self._database.session() as session:
                for site, level in session.execute(
                    select(Site.name, LockdownState.announced_level).join(
                        LockdownState, LockdownState.site_id == Site.id
                    )
                ):
                    levels.add_metric([site], level)
                for kind, acknowledged, count in session.execute(
                    select(Incident.kind, Incident.acknowledged_at.is_not(None), func.count())
                    .where(Incident.resolved_at.is_(None))
                    .group_by(Incident.kind, Incident.acknowledged_at.is_not(None))
                ):
                    incidents.add_metric([kind, str(bool(acknowledged)).lower()], count)
                for bank in session.scalars(select(Bank)):
                    labels = [bank.name, bank.hash_type, bank.action, str(bank.enabled).lower()]
                    sizes.add_metric(labels, bank.hash_count)
                waiting = dict(
                    session.execute(
                        select(Submission.priority, func.count())
                        .where(Submission.review_state == "pending")
                        .group_by(Submission.priority)
                    ).all()
                )
                for priority in Priority:
                    pending.add_metric([priority.value], waiting.get(priority.rank, 0))
        except SQLAlchemyError:
            return  # /readyz reports the database; a scrape must still succeed
        yield sizes
        yield pending
        yield levels
        yield incidents
