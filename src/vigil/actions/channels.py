"""On-call channels: what a page says, and how it reaches a JSON webhook, a Slack-compatible
webhook, PagerDuty (Events API v2) or an e-mail inbox.

A :class:`PageMessage` is built from an incident once, then formatted per channel kind. Formatting
is pure (:func:`webhook_body`, :func:`slack_body`, :func:`pagerduty_body`, :func:`email_message`);
:class:`ChannelSender` does the sending and raises :class:`PageDeliveryError` with a message an
operator can act on when a channel does not take the page.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import urlsplit

import httpx

from vigil import __version__
from vigil.actions.incidents import IncidentKind, PageEvent
from vigil.actions.webhooks import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign
from vigil.config import ChannelSettings, PagingSettings, Settings
from vigil.errors import VigilError
from vigil.store.models import Incident, Page

# PagerDuty refuses a summary longer than this.
PAGERDUTY_SUMMARY_LIMIT = 1024
# Slack refuses a section's text longer than this.
_SLACK_SECTION_LIMIT = 3000
# Control characters (CR, LF, NEL...), and the line and paragraph separators.
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})
# Enough of a refusing receiver's answer to say why, not so much that the log fills up.
_RESPONSE_EXCERPT = 300

_EVENT_TYPES = {
    PageEvent.TRIGGER: "incident.triggered",
    PageEvent.ACKNOWLEDGE: "incident.acknowledged",
    PageEvent.RESOLVE: "incident.resolved",
}


class PageDeliveryError(VigilError):
    """A channel did not take a page (refused, unreachable, or misconfigured); it is retried."""

    code = "page_not_delivered"
    http_status = 502


@dataclass(frozen=True)
class PageMessage:
    """Everything a page says about an incident, whatever channel carries it."""

    page_id: int
    event: PageEvent
    incident_id: int
    kind: str
    title: str
    site: str
    opened_at: datetime
    trigger_count: int
    tier: int  # 1-based: the tier whose page this is
    details: Mapping[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    ack_url: str
    review_url: str
    source: str  # who is speaking: the site, or this Vigil's host when there is no site
    created_at: datetime  # when the message was built for sending (the deliverer's clock)

    @classmethod
    def build(
        cls, page: Page, incident: Incident, site_name: str, settings: Settings, now: datetime
    ) -> PageMessage:
        base = settings.public_url
        return cls(
            page_id=page.id,
            event=PageEvent(page.event),
            incident_id=incident.id,
            kind=incident.kind,
            title=incident.title,
            site=site_name,
            opened_at=incident.opened_at,
            trigger_count=incident.trigger_count,
            tier=page.tier + 1,
            details=dict(incident.details),
            acknowledged_at=incident.acknowledged_at,
            acknowledged_by=incident.acknowledged_by,
            resolved_at=incident.resolved_at,
            resolved_by=incident.resolved_by,
            ack_url=f"{base}/review/incidents/{incident.id}/acknowledge?token={incident.ack_token}",
            review_url=f"{base}/review/lockdown",
            source=site_name or urlsplit(base).hostname or "vigil",
            created_at=now,
        )

    @property
    def event_id(self) -> str:
        """Stable across retries of one page, so a receiver can drop a repeated delivery."""
        return f"vigil-page-{self.page_id}"

    @property
    def event_type(self) -> str:
        return _EVENT_TYPES[self.event]

    @property
    def severity(self) -> str:
        """PagerDuty's severity: known illegal images and heavy lockdowns wake people up."""
        if self.kind == IncidentKind.KNOWN_ILLEGAL:
            return "critical"
        level = self.details.get("level")
        if self.kind == IncidentKind.LOCKDOWN and isinstance(level, int) and level >= 2:
            return "critical"
        return "error"

    @property
    def headline(self) -> str:
        """One line saying what happened, for subjects, summaries and fallback text."""
        prefix = {
            PageEvent.TRIGGER: "",
            PageEvent.ACKNOWLEDGE: "Acknowledged: ",
            PageEvent.RESOLVE: "Resolved: ",
        }[self.event]
        return single_line(prefix + self.title)

    def facts(self) -> list[tuple[str, str]]:
        """The incident as labelled lines, in the order people read them."""
        facts = [
            ("Site", self.site),
            ("Kind", self.kind),
            ("Opened", self.opened_at.isoformat()),
            ("Triggers", str(self.trigger_count)),
            ("Tier", str(self.tier)),
        ]
        if self.acknowledged_at is not None:
            facts.append(
                ("Acknowledged", f"{self.acknowledged_at.isoformat()} by {self.acknowledged_by}")
            )
        if self.resolved_at is not None:
            facts.append(("Resolved", f"{self.resolved_at.isoformat()} by {self.resolved_by}"))
        for key, value in self.details.items():
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            facts.append((str(key), text))
        return [(label, single_line(text)) for label, text in facts]


def single_line(text: str) -> str:
    """Text on one line: line breaks and control characters become spaces, runs of spaces one.

    Titles and details carry site names and uploader ids: in an e-mail header a line break
    would start a new header (header injection); elsewhere it would forge extra lines. Unicode's
    own line and paragraph separators count too: some clients break lines on them.
    """
    spaced = "".join(" " if unicodedata.category(char) in _LINE_BREAKING else char for char in text)
    return " ".join(spaced.split())


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# --- formats -------------------------------------------------------------------------------------


def webhook_body(message: PageMessage) -> dict[str, Any]:
    """The generic JSON page, shaped like Vigil's site webhooks."""
    return {
        "id": message.event_id,
        "type": message.event_type,
        "created_at": message.created_at.isoformat(),
        "incident": {
            "id": message.incident_id,
            "kind": message.kind,
            "title": message.title,
            "site": message.site,
            "opened_at": message.opened_at.isoformat(),
            "tier": message.tier,
            "trigger_count": message.trigger_count,
            "details": dict(message.details),
            "acknowledged_at": _iso(message.acknowledged_at),
            "acknowledged_by": message.acknowledged_by,
            "resolved_at": _iso(message.resolved_at),
            "resolved_by": message.resolved_by,
        },
        "acknowledge_url": message.ack_url,
        "review_url": message.review_url,
    }


def slack_escape(text: str) -> str:
    """Slack's three control characters, escaped so text cannot forge links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(message: PageMessage) -> dict[str, Any]:
    """An incoming-webhook message: blocks for Slack, ``text`` for everything Slack-compatible."""
    headline = slack_escape(message.headline)
    ack_link = slack_escape(message.ack_url)
    review_link = slack_escape(message.review_url)
    if message.event is PageEvent.TRIGGER:
        fallback = f"{headline}\nAcknowledge: {ack_link}"
    else:
        fallback = headline
    lines = [f"*{headline}*"]
    lines += [f"{slack_escape(label)}: {slack_escape(text)}" for label, text in message.facts()]
    section = "\n".join(lines)
    if len(section) > _SLACK_SECTION_LIMIT:
        section = section[: _SLACK_SECTION_LIMIT - 1] + "…"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": section}}
    ]
    if message.event is PageEvent.TRIGGER:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Acknowledge"},
                        "url": message.ack_url,
                        "style": "danger",
                    },
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the review app"},
                        "url": message.review_url,
                    },
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"<{ack_link}|Acknowledge> · <{review_link}|Review>"}
            ],
        }
    )
    return {"text": fallback, "blocks": blocks}


def pagerduty_body(message: PageMessage, routing_key: str) -> dict[str, Any]:
    """An Events API v2 event; one dedup key per incident so acknowledge and resolve match."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": message.event.value,
        "dedup_key": f"vigil-incident-{message.incident_id}",
    }
    if message.event is not PageEvent.TRIGGER:
        return body
    summary = message.headline
    if len(summary) > PAGERDUTY_SUMMARY_LIMIT:
        summary = summary[: PAGERDUTY_SUMMARY_LIMIT - 1] + "…"
    body["payload"] = {
        "summary": summary,
        "source": message.source,
        "severity": message.severity,
        "timestamp": message.opened_at.isoformat(),
        "component": "vigil",
        "group": message.site,
        "class": message.kind,
        "custom_details": {
            **message.details,
            "trigger_count": message.trigger_count,
            "tier": message.tier,
        },
    }
    body["links"] = [
        {"href": message.ack_url, "text": "Acknowledge in Vigil"},
        {"href": message.review_url, "text": "Open the review app"},
    ]
    body["client"] = "Vigil"
    body["client_url"] = message.review_url
    return body


def email_message(message: PageMessage, sender: str, to: list[str]) -> EmailMessage:
    """A plain-text e-mail; every header value is one line, whatever the incident says."""
    email = EmailMessage()
    email["Subject"] = f"[Vigil] {message.headline}"
    email["From"] = sender
    email["To"] = ", ".join(to)
    email["Date"] = format_datetime(message.created_at)
    email["Message-ID"] = make_msgid(idstring=message.event_id, domain="vigil")
    # Threads every page about one incident together in the recipient's mail client.
    thread = f"<vigil-incident-{message.incident_id}@vigil>"
    if message.event is not PageEvent.TRIGGER or message.tier > 1:
        email["In-Reply-To"] = thread
        email["References"] = thread
    lines = [message.headline, ""]
    lines += [f"{label}: {text}" for label, text in message.facts()]
    lines.append("")
    if message.event is PageEvent.TRIGGER:
        lines += ["Acknowledge (stops escalation to the next tier):", message.ack_url, ""]
    lines += ["Review app:", message.review_url, ""]
    email.set_content("\n".join(lines))
    return email


# --- sending -------------------------------------------------------------------------------------

Sender = Callable[[ChannelSettings, PageMessage], None]


class ChannelSender:
    """Sends pages for real: one HTTP client for every web channel, SMTP for e-mail."""

    def __init__(self, paging: PagingSettings, client: httpx.Client | None = None) -> None:
        self._paging = paging
        self._client = client or httpx.Client(
            timeout=paging.timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": f"Vigil/{__version__}"},
        )

    def close(self) -> None:
        self._client.close()

    def __call__(self, channel: ChannelSettings, message: PageMessage) -> None:
        self.send(channel, message)

    def send(self, channel: ChannelSettings, message: PageMessage) -> None:
        """Deliver one page; raises :class:`PageDeliveryError` when the channel did not take it."""
        if channel.kind == "email":
            self._send_email(channel, message)
        elif channel.kind == "pagerduty":
            assert channel.routing_key is not None  # the settings refuse one without
            self._post_json(channel, pagerduty_body(message, channel.routing_key))
        elif channel.kind == "slack":
            self._post_json(channel, slack_body(message))
        else:
            self._post_webhook(channel, message)

    def _post_webhook(self, channel: ChannelSettings, message: PageMessage) -> None:
        body = json.dumps(webhook_body(message), separators=(",", ":"), sort_keys=True).encode()
        headers = {EVENT_ID_HEADER: message.event_id, EVENT_TYPE_HEADER: message.event_type}
        if channel.secret:
            # Wall-clock time, not the deliverer's clock: the receiver checks freshness
            # against its own clock to refuse replays.
            headers[SIGNATURE_HEADER] = sign(channel.secret, body, int(time.time()))
        self._post_bytes(channel, body, headers)

    def _post_json(self, channel: ChannelSettings, document: dict[str, Any]) -> None:
        self._post_bytes(channel, json.dumps(document, separators=(",", ":")).encode(), {})

    def _post_bytes(self, channel: ChannelSettings, body: bytes, headers: dict[str, str]) -> None:
        url = channel.endpoint
        if not url:
            raise PageDeliveryError(f"channel {channel.name!r} has no url")
        try:
            response = self._client.post(
                url, content=body, headers={"Content-Type": "application/json", **headers}
            )
        except httpx.HTTPError as error:
            raise PageDeliveryError(
                f"{channel.kind} channel {channel.name!r}: {type(error).__name__}: {error}"
            ) from error
        if not 200 <= response.status_code < 300:
            excerpt = single_line(response.text[:_RESPONSE_EXCERPT])
            raise PageDeliveryError(
                f"{channel.kind} channel {channel.name!r}: HTTP {response.status_code} "
                f"from {url}" + (f": {excerpt}" if excerpt else "")
            )

    def _send_email(self, channel: ChannelSettings, message: PageMessage) -> None:
        smtp = self._paging.smtp
        email = email_message(message, smtp.sender, channel.to)
        where = f"email channel {channel.name!r} via SMTP {smtp.host}:{smtp.port}"
        try:
            with _smtp_connection(self._paging) as connection:
                # Raises only when every recipient was refused; a partial refusal still reached
                # someone, and retrying would page those people twice.
                connection.send_message(email, from_addr=smtp.sender, to_addrs=channel.to)
        # SMTPException is an OSError too: one clause for the server's refusals and for
        # connections refused, timed out or failing TLS.
        except OSError as error:
            raise PageDeliveryError(f"{where}: {type(error).__name__}: {error}") from error


def _smtp_connection(paging: PagingSettings) -> smtplib.SMTP:
    smtp = paging.smtp
    # The server's certificate is always checked: against the system's CAs, or the configured file.
    context = ssl.create_default_context(cafile=smtp.ca_file)
    connection: smtplib.SMTP
    if smtp.security == "tls":
        connection = smtplib.SMTP_SSL(
            smtp.host, smtp.port, timeout=smtp.timeout_seconds, context=context
        )
    else:
        connection = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
    try:
        if smtp.security == "starttls":
            connection.starttls(context=context)
        if smtp.username:
            connection.login(smtp.username, smtp.password or "")
    except BaseException:
        connection.close()
        raise
    return connection
