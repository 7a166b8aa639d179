"""Deliver due webhook notifications from the outbox, retrying with exponential backoff."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from vigil import __version__
from vigil.actions.webhooks import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign
from vigil.config import WebhookSettings
from vigil.metrics import Metrics
from vigil.store import outbox
from vigil.store.database import Database
from vigil.store.models import Site
from vigil.store.types import utcnow
from vigil.workers.retry import backoff_seconds, next_attempt_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Attempt:
    delivery_id: int
    event_id: str
    event_type: str
    body: str
    attempts_before: int
    url: str | None
    secret: str | None


class WebhookDeliverer:
    def __init__(
        self,
        database: Database,
        settings: WebhookSettings,
        metrics: Metrics,
        client: httpx.Client | None = None,
    ) -> None:
        self._database = database
        self._settings = settings
        self._metrics = metrics
        self._client = client or httpx.Client(
            timeout=settings.timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": f"Vigil/{__version__}"},
        )

    def close(self) -> None:
        self._client.close()

    def deliver_due(self, limit: int = 50) -> int:
        """Attempt every delivery that is due now; returns how many were attempted."""
        now = utcnow()
        with self._database.session() as session:
            due = outbox.due_ids(session, now, limit)
        attempted = 0
        for delivery_id in due:
            attempt = self._claim(delivery_id, now)
            if attempt is None:
                continue  # another worker has it
            # No transaction is open while the receiver is called: a slow site blocks no one.
            error = self._send(attempt)
            self._settle(attempt, error)
            attempted += 1
        return attempted

    def _claim(self, delivery_id: int, now: datetime) -> _Attempt | None:
        lease = timedelta(seconds=self._settings.lease_seconds)
        with self._database.session() as session:
            delivery = outbox.claim(session, delivery_id, now, lease)
            if delivery is None:
                return None
            site = session.get(Site, delivery.site_id)
            return _Attempt(
                delivery_id=delivery.id,
                event_id=delivery.event_id,
                event_type=delivery.event_type,
                body=delivery.body,
                attempts_before=delivery.attempts,
                url=site.webhook_url if site else None,
                secret=site.webhook_secret if site else None,
            )

    def _send(self, attempt: _Attempt) -> str | None:
        """None on success, else what went wrong."""
        if not attempt.url or not attempt.secret:
            return "the site has no webhook URL configured"
        body = attempt.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(attempt.secret, body, int(time.time())),
            EVENT_ID_HEADER: attempt.event_id,
            EVENT_TYPE_HEADER: attempt.event_type,
        }
        try:
            response = self._client.post(attempt.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code} from the receiver"

    def _settle(self, attempt: _Attempt, error: str | None) -> None:
        now = utcnow()
        with self._database.session() as session:
            if error is None:
                outbox.record_success(session, attempt.delivery_id, now)
                self._metrics.webhook_attempts.labels("delivered").inc()
                return
            attempts = attempt.attempts_before + 1
            settings = self._settings
            retry_at = next_attempt_at(
                attempts,
                settings.max_attempts,
                settings.retry_base_seconds,
                settings.retry_max_seconds,
                now,
            )
            outbox.record_failure(session, attempt.delivery_id, error, retry_at)
        outcome = "retrying" if retry_at else "failed"
        self._metrics.webhook_attempts.labels(outcome).inc()
        log.warning("webhook %s attempt %d: %s (%s)", attempt.event_id, attempts, error, outcome)

    def backoff_seconds(self, attempts: int) -> float:
        return backoff_seconds(
            attempts, self._settings.retry_base_seconds, self._settings.retry_max_seconds
        )
