"""Database tables. Every change to them comes with an Alembic migration in ``migrations/``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class BankGeneration(Base):
    """One row whose counter moves on every bank change, so each process knows when its
    in-memory index is stale."""

    __tablename__ = "bank_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


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
