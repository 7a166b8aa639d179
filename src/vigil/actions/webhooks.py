"""Webhook notifications to sites: signed JSON, written to the outbox, delivered with retries.

Signature scheme (as payment providers use): the header ``Vigil-Signature: t=<unix time>,v1=<hex>``
where ``<hex>`` is HMAC-SHA256 with the site's secret over ``"<t>." + body``. A receiver recomputes
it, compares in constant time and refuses timestamps too far from its clock (replays).
Delivery is at least once: receivers de-duplicate by the ``Vigil-Event-Id`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from vigil.store import outbox

SIGNATURE_HEADER = "Vigil-Signature"
EVENT_ID_HEADER = "Vigil-Event-Id"
EVENT_TYPE_HEADER = "Vigil-Event-Type"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Vigil-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Whether ``header`` is a valid, fresh signature of ``body``: for sites receiving webhooks."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))


def enqueue_event(
    session: Session, site_id: int, event_type: str, data: Mapping[str, Any], created_at: datetime
) -> str:
    """Write an event to the outbox in the caller's transaction; returns its id."""
    event_id = str(uuid.uuid4())
    body = json.dumps(
        {"id": event_id, "type": event_type, "created_at": created_at.isoformat(), "data": data},
        separators=(",", ":"),
        sort_keys=True,
    )
    outbox.enqueue(session, site_id, event_type, body, event_id=event_id, now=created_at)
    return event_id
