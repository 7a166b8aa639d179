"""Database tables. Every change to them comes with an Alembic migration in ``migrations/``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vigil.store.types import BigIntegerKey, JsonDocument, UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar = {datetime: UTCDateTime(), dict[str, Any]: JsonDocument}


class Site(Base):
    """A community that sends images to screen; it owns API keys and a webhook endpoint."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))
    # SHA-256 of the key: keys are 256-bit random strings, so a slow hash would add nothing.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Bank(Base):
    """A named list of known images and what a match with it means."""

    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    hash_type: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(10))
    threshold: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)
    hash_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BankHash(Base):
    __tablename__ = "bank_hashes"
    __table_args__ = (
        UniqueConstraint("bank_id", "value", name="uq_bank_hashes_bank_value"),
        Index("ix_bank_hashes_value", "value"),
        Index("ix_bank_hashes_generation", "generation"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The bank generation of the transaction that added it: indexes catch up by generation.
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class BankHashRemoval(Base):
    """A removed bank entry, so an index built before the removal can drop it too."""

    __tablename__ = "bank_hash_removals"
    __table_args__ = (Index("ix_bank_hash_removals_generation", "generation"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(String(64))
    added_generation: Mapped[int] = mapped_column(BigInteger)
    generation: Mapped[int] = mapped_column(BigInteger)
    removed_at: Mapped[datetime] = mapped_column(default=utcnow)


class BankGeneration(Base):
    """One row whose counter moves on every bank change, so each process knows when its
    in-memory index is stale."""

    __tablename__ = "bank_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    # Made once, when the schema is created: tells this database from another (a saved index
    # records it).
    database_id: Mapped[str | None] = mapped_column(String(36))


class Submission(Base):
    """One screened image: its hashes, the uploader context, and the current decision."""

    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint("site_id", "idempotency_key", name="uq_submissions_site_idempotency"),
        Index("ix_submissions_review_created", "review_state", "created_at"),
        Index("ix_submissions_review_priority", "review_state", "priority", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    uploader_id: Mapped[str | None] = mapped_column(String(200), index=True)
    ref: Mapped[str | None] = mapped_column(String(200))
    context: Mapped[dict[str, Any]]
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    md5: Mapped[str] = mapped_column(String(32))
    sha1: Mapped[str] = mapped_column(String(40))
    pdq: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    image_format: Mapped[str] = mapped_column(String(10))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    frame_count: Mapped[int] = mapped_column(Integer)
    frames_screened: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    initial_decision: Mapped[str] = mapped_column(String(10))
    decision: Mapped[str] = mapped_column(String(10))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    # What each classifier scored (model, version, scores), or why it could not.
    classifications: Mapped[list[dict[str, Any]]] = mapped_column(
        JsonDocument, default=list, server_default="[]"
    )
    review_state: Mapped[str] = mapped_column(String(10))
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # Priority.rank
    flags: Mapped[list[str]] = mapped_column(JsonDocument, default=list, server_default="[]")
    image_path: Mapped[str | None] = mapped_column(String(500))
    # Matched a block bank, or a moderator confirmed it illegal: never shown to anyone again.
    known_illegal: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The moderator reviewing it, so no two people open the same image; lapses by itself.
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    claim_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_note: Mapped[str | None] = mapped_column(Text)
    # Community reports passed the threshold: the site was asked to hide the image.
    hide_requested_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Append-only: the database refuses updates and deletes (see the migration's triggers)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50), index=True)
    subject: Mapped[str | None] = mapped_column(String(200), index=True)
    details: Mapped[dict[str, Any]]


class WebhookDelivery(Base):
    """The durable outbox: a notification is written with the change that causes it and
    delivered (and retried) afterwards, so a restart loses none."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(50))
    # The exact body that is signed and sent, serialised once so every retry is identical.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A person who uses the review app."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The last time step whose code was accepted: a code works once.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    show_images: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "login_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Exposure(Base):
    """A moderator looked at a flagged image without the blur: counted per shift."""

    __tablename__ = "exposures"
    __table_args__ = (Index("ix_exposures_user_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    submission_id: Mapped[str] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class UploaderSuspension(Base):
    """An uploader Vigil blocks outright, on a moderator's word; one row per uploader."""

    __tablename__ = "uploader_suspensions"
    __table_args__ = (
        UniqueConstraint("site_id", "uploader_id", name="uq_uploader_suspensions_site_uploader"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    uploader_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    suspended_by: Mapped[str] = mapped_column(String(200))
    suspended_at: Mapped[datetime] = mapped_column(default=utcnow)
    lifted_at: Mapped[datetime | None]


class SiteSignal(Base):
    """Something that happened on a site, counted over time windows by the lockdown rules.

    Short-lived: rows older than the longest window are pruned (the audit log keeps history).
    """

    __tablename__ = "site_signals"
    __table_args__ = (
        Index("ix_site_signals_site_kind_at", "site_id", "kind", "at"),
        Index("ix_site_signals_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    at: Mapped[datetime]
    uploader_id: Mapped[str | None] = mapped_column(String(200))
    submission_id: Mapped[str | None] = mapped_column(String(36))
    # The first frame's PDQ hash of an upload, for bursts of near-identical images.
    pdq: Mapped[str | None] = mapped_column(String(64))
    # What the event counts for: a report's weight, the accounts in a near-duplicate burst.
    value: Mapped[float] = mapped_column(Float, default=1.0)


class LockdownState(Base):
    """A site's lockdown: the level the rules raised, and a level an admin set by hand."""

    __tablename__ = "lockdown_states"

    site_id: Mapped[int] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    automatic_level: Mapped[int] = mapped_column(Integer, default=0)
    automatic_since: Mapped[datetime | None]
    # The last time a rule asked for the automatic level (or more): the calm period runs from here.
    last_triggered_at: Mapped[datetime | None]
    automatic_cause: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    manual_level: Mapped[int | None] = mapped_column(Integer)
    manual_until: Mapped[datetime | None]
    manual_reason: Mapped[str | None] = mapped_column(Text)
    manual_by: Mapped[str | None] = mapped_column(String(200))
    # Signals before this do not count: an admin cleared the lockdown after looking at them.
    counted_from: Mapped[datetime | None]
    # The level the site was last told about (lockdown.changed): schedules move it silently.
    announced_level: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Report(Base):
    """A community member reported a submission."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("submission_id", "reporter_id", name="uq_reports_submission_reporter"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    reporter_id: Mapped[str] = mapped_column(String(200))
    reporter_trust: Mapped[str | None] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(30))
    note: Mapped[str | None] = mapped_column(Text)
    weight: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Incident(Base):
    """Something on-call staff must know about now; paged tier by tier until acknowledged."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    # Unique while the incident is open, so repeated triggers join it instead of paging again;
    # NULL once resolved (NULLs never clash).
    open_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict[str, Any]]
    trigger_count: Mapped[int] = mapped_column(Integer, default=1)
    opened_at: Mapped[datetime]
    last_triggered_at: Mapped[datetime]
    # The last tier paged (0-based), and when the next is due unless someone acknowledges.
    tier: Mapped[int] = mapped_column(Integer, default=-1)
    next_tier_at: Mapped[datetime | None] = mapped_column(index=True)
    # The secret in the acknowledgement link sent with every page.
    ack_token: Mapped[str] = mapped_column(String(64), unique=True)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))


class Page(Base):
    """One message to one channel about an incident: an outbox row, delivered with retries."""

    __tablename__ = "pages"
    __table_args__ = (Index("ix_pages_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    tier: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(64))
    # trigger: page someone; acknowledge / resolve: tell a channel that tracks state (PagerDuty).
    event: Mapped[str] = mapped_column(String(20), default="trigger")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class EvidenceItem(Base):
    """An illegal image kept encrypted for the authorities, with what was known when it came.

    The image itself is a file in the vault, encrypted with a key of its own; that key is stored
    here only wrapped by a master key. Nothing here is ever served as an image.
    """

    __tablename__ = "evidence_items"
    __table_args__ = (Index("ix_evidence_items_site_uploader", "site_id", "uploader_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), unique=True)
    uploader_id: Mapped[str | None] = mapped_column(String(200))
    # bank_match: a block bank knew it; confirmed_illegal: a child-safety reviewer said so.
    cause: Mapped[str] = mapped_column(String(20))
    # The encrypted file, relative to the vault; NULL once purged.
    file_path: Mapped[str | None] = mapped_column(String(500))
    key_id: Mapped[str | None] = mapped_column(String(32))
    wrapped_key: Mapped[str | None] = mapped_column(String(200))
    ciphertext_sha256: Mapped[str] = mapped_column(String(64))
    byte_size: Mapped[int] = mapped_column(Integer)
    image_format: Mapped[str] = mapped_column(String(10))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    md5: Mapped[str] = mapped_column(String(32))
    sha1: Mapped[str] = mapped_column(String(40))
    pdq: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    # The bank entries it matched: bank, hash type, the entry, distance, frame.
    matches: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    # What the site said about the upload: uploader, IP and port, user agent, account details.
    capture: Mapped[dict[str, Any]]
    # The image's EXIF metadata as received (the image bytes are never altered).
    exif: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    preserved_at: Mapped[datetime]
    preserved_by: Mapped[str] = mapped_column(String(200))
    retain_until: Mapped[datetime] = mapped_column(index=True)
    purged_at: Mapped[datetime | None]


class CustodyEntry(Base):
    """One action on evidence, chained to the entry before it by its hash.

    ``id`` is the position in the chain (1, 2, 3...): a gap means an entry was deleted. The
    database refuses updates and deletes (see the migration's triggers).
    """

    __tablename__ = "custody_log"

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=False)
    item_id: Mapped[str | None] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]
    details: Mapped[dict[str, Any]]
    previous_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class CustodyHead(Base):
    """The chain's last entry: locked to append, and compared by ``vigil evidence verify`` so
    entries cut off the end are noticed too."""

    __tablename__ = "custody_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class LegalHold(Base):
    """A case that needs items kept beyond their retention: until it is released."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    case_name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(200))
    release_reason: Mapped[str | None] = mapped_column(Text)


class LegalHoldItem(Base):
    __tablename__ = "legal_hold_items"

    hold_id: Mapped[int] = mapped_column(
        ForeignKey("legal_holds.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[str] = mapped_column(ForeignKey("evidence_items.id"), primary_key=True)


class AuthorityReport(Base):
    """A report to an authority covering one uploader's items: NCMEC's CyberTipline (sent by
    Vigil, with retries), or a package for the NCA or the police (written for a person to send).
    """

    __tablename__ = "authority_reports"
    __table_args__ = (Index("ix_authority_reports_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    uploader_id: Mapped[str | None] = mapped_column(String(200), index=True)
    authority: Mapped[str] = mapped_column(String(10))  # ncmec, nca, police
    # pending (to send), sent, failed; prepared for a package a person sends.
    status: Mapped[str] = mapped_column(String(10), default="pending")
    environment: Mapped[str | None] = mapped_column(String(20))
    # The authority's id for the report (NCMEC's report id), once it gave one.
    external_id: Mapped[str | None] = mapped_column(String(100))
    # What was (or will be) sent, exactly: the report XML, the package JSON.
    payload: Mapped[str] = mapped_column(Text)
    # Where a multi-step submission got to, so a retry resumes instead of starting again.
    progress: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class AuthorityReportItem(Base):
    __tablename__ = "authority_report_items"

    report_id: Mapped[int] = mapped_column(
        ForeignKey("authority_reports.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[str] = mapped_column(ForeignKey("evidence_items.id"), primary_key=True)
    # The authority's id for the uploaded file (NCMEC's fileId).
    external_file_id: Mapped[str | None] = mapped_column(String(100))
