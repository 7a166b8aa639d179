"""Deliver due on-call pages from the outbox, retrying with exponential backoff.

Works like :mod:`vigil.workers.webhooks`: each due page is leased by a conditional update, the
message is built in a short transaction, the channel is called with no transaction open, and the
outcome is recorded. A trigger page whose incident was acknowledged or resolved before it went
out is cancelled instead: nobody's phone should ring about something a colleague already has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy.orm import Session

from vigil.actions.channels import ChannelSender, PageDeliveryError, PageMessage, Sender
from vigil.actions.incidents import PageEvent
from vigil.clock import Clock
from vigil.config import ChannelSettings, Settings
from vigil.metrics import Metrics
from vigil.store import pages
from vigil.store.database import Database
from vigil.store.models import Incident, Page, Site
from vigil.workers.retry import backoff_seconds, next_attempt_at

log = logging.getLogger(__name__)

# A worker that dies mid-send keeps its page this long before another may try; longer than any
# one attempt can take (an HTTP call or an SMTP conversation, each bounded by its timeout).
_MINIMUM_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class _Attempt:
    page_id: int
    attempts_before: int
    channel: ChannelSettings
    message: PageMessage


class _NotSent(Enum):
    """Why a claimed page needs no sending."""

    HELD_ELSEWHERE = "another worker holds it, or it is no longer pending"
    SETTLED = "cancelled, or failed for good, when it was claimed"


class PageDeliverer:
    """Sends the pages that are due. ``sender`` replaces the real channels (the attack replay
    records pages instead of sending them)."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        *,
        sender: Sender | None = None,
    ) -> None:
        self._database = database
        self._settings = settings
        self._paging = settings.paging
        self._clock = clock
        self._metrics = metrics
        self._transport: ChannelSender | None = None
        if sender is None:
            self._transport = sender = ChannelSender(settings.paging)
        self._sender = sender
        self._lease = timedelta(
            seconds=max(
                _MINIMUM_LEASE_SECONDS,
                4 * max(self._paging.timeout_seconds, self._paging.smtp.timeout_seconds),
            )
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def deliver_due(self, limit: int = 50) -> int:
        """Handle every page due now: send it, or cancel it when no longer wanted.

        Returns how many pages were handled (attempted or cancelled), so the embedded worker
        knows whether to look again at once.
        """
        now = self._clock.now()
        with self._database.session() as session:
            due = pages.due_ids(session, now, limit)
        handled = 0
        for page_id in due:
            attempt = self._claim(page_id, now)
            if attempt is _NotSent.HELD_ELSEWHERE:
                continue
            handled += 1
            if attempt is _NotSent.SETTLED:
                continue
            # No transaction is open while the channel is called: a slow channel blocks no one.
            error = self._send(attempt)
            self._settle(attempt, error)
        return handled

    def _claim(self, page_id: int, now: datetime) -> _Attempt | _NotSent:
        """Lease the page and build its message, unless it must not (or cannot) be sent."""
        with self._database.session() as session:
            page = pages.claim(session, page_id, now, self._lease)
            if page is None:
                return _NotSent.HELD_ELSEWHERE
            incident = session.get(Incident, page.incident_id)
            assert incident is not None  # a page is deleted with its incident
            unwanted = _why_unwanted(session, page, incident)
            if unwanted is not None:
                pages.cancel(session, page.id, f"not sent: {unwanted}")
                self._metrics.page_attempts.labels("cancelled").inc()
                log.info("page %d for incident %d not sent: %s", page.id, incident.id, unwanted)
                return _NotSent.SETTLED
            channel = next((c for c in self._paging.channels if c.name == page.channel), None)
            if channel is None:
                error = f"channel {page.channel!r} is not in the configuration (any more)"
                pages.record_failure(session, page.id, error, None)
                self._metrics.page_attempts.labels("failed").inc()
                log.error("page %d for incident %d: %s", page.id, incident.id, error)
                return _NotSent.SETTLED
            site = session.get(Site, incident.site_id)
            message = PageMessage.build(
                page, incident, site.name if site else "", self._settings, now
            )
            return _Attempt(page.id, page.attempts, channel, message)

    def _send(self, attempt: _Attempt) -> str | None:
        """None on success, else what went wrong."""
        try:
            self._sender(attempt.channel, attempt.message)
        except PageDeliveryError as error:
            return error.message
        except Exception as error:  # a sender's bug must not leave the page leased forever
            log.exception("page %d: the sender failed unexpectedly", attempt.page_id)
            return f"{type(error).__name__}: {error}"
        return None

    def _settle(self, attempt: _Attempt, error: str | None) -> None:
        now = self._clock.now()
        with self._database.session() as session:
            if error is None:
                pages.record_success(session, attempt.page_id, now)
                self._metrics.page_attempts.labels("delivered").inc()
                return
            attempts = attempt.attempts_before + 1
            paging = self._paging
            retry_at = next_attempt_at(
                attempts,
                paging.max_attempts,
                paging.retry_base_seconds,
                paging.retry_max_seconds,
                now,
            )
            pages.record_failure(session, attempt.page_id, error, retry_at)
        outcome = "retrying" if retry_at else "failed"
        self._metrics.page_attempts.labels(outcome).inc()
        log.warning(
            "page %d (incident %d, %s) attempt %d: %s (%s)",
            attempt.page_id,
            attempt.message.incident_id,
            attempt.channel.name,
            attempts,
            error,
            outcome,
        )

    def backoff_seconds(self, attempts: int) -> float:
        return backoff_seconds(
            attempts, self._paging.retry_base_seconds, self._paging.retry_max_seconds
        )


def _why_unwanted(session: Session, page: Page, incident: Incident) -> str | None:
    """Why a page must no longer be sent, or None when it must."""
    if page.event == PageEvent.TRIGGER:
        # Nobody's phone should ring about an incident a colleague already has.
        if incident.acknowledged_at is not None:
            return "the incident was acknowledged first"
        if incident.resolved_at is not None:
            return "the incident was resolved first"
        return None
    if not pages.channel_heard_of(session, incident.id, page.channel):
        # Its trigger was cancelled or failed: an acknowledge or resolve would be about an
        # incident the channel never saw.
        return "the channel was never paged about this incident"
    return None
