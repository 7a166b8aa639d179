"""Who may use the review app, and how they prove it: roles, argon2 passwords, TOTP codes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from vigil.config import ReviewSettings
from vigil.errors import InvalidRequest, Unauthenticated
from vigil.names import validate_name
from vigil.roles import Permission as Permission  # re-exported: the app imports both from here
from vigil.roles import UserRole as UserRole
from vigil.store import audit
from vigil.store import users as user_store
from vigil.store.database import Database
from vigil.store.models import User

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
TOTP_ISSUER = "Vigil"
BOOTSTRAP_USER = "admin"


_hasher = PasswordHasher()
# Checked when a name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidRequest(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def _password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(user: User, secret: str) -> str:
    """The ``otpauth://`` address an authenticator app reads (usually as a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.name, issuer_name=TOTP_ISSUER)


def _accept_totp(user: User, code: str, now: datetime) -> bool:
    """Whether ``code`` is valid now (one step of clock drift either way) and unused."""
    if user.totp_secret is None:
        return True
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(user.totp_secret)
    step_now = int(now.timestamp()) // totp.interval
    for step in (step_now, step_now - 1, step_now + 1):
        if secrets.compare_digest(totp.at(step * totp.interval), code):
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return False  # a replayed code
            user.totp_last_step = step
            return True
    return False


@dataclass(frozen=True)
class LoginResult:
    user: User
    token: str  # for the cookie; only its hash is stored
    csrf_token: str
    expires_at: datetime


def log_in(
    session: Session,
    settings: ReviewSettings,
    name: str,
    password: str,
    totp_code: str,
    now: datetime,
) -> LoginResult:
    """Check a name, password and (if enrolled) code; start a login session.

    Every failure gives the same message, so a guesser learns nothing about which part was
    wrong. Wrong passwords in a row pause the account for a while.
    """
    refused = Unauthenticated("wrong name, password or code")
    user = (
        user_store.find_user(session, name, for_update=True)
        if len(password) <= MAX_PASSWORD_LENGTH
        else None
    )
    if user is None:
        _password_matches(_DUMMY_HASH, password)
        raise refused
    if user.disabled_at is not None or (user.locked_until is not None and user.locked_until > now):
        _password_matches(_DUMMY_HASH, password)
        audit.append(session, f"user:{user.name}", "user.login_refused", user.name, {})
        raise refused
    if not _password_matches(user.password_hash, password) or not _accept_totp(
        user, totp_code, now
    ):
        user.failed_logins += 1
        details: dict[str, object] = {"failures": user.failed_logins}
        if user.failed_logins >= settings.max_login_failures:
            user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
            user.failed_logins = 0
            details["locked_until"] = user.locked_until.isoformat()
        audit.append(session, f"user:{user.name}", "user.login_failed", user.name, details)
        raise refused
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    token, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires_at = now + timedelta(hours=settings.session_hours)
    user_store.end_expired_login_sessions(session, now)
    user_store.add_login_session(session, user, token, csrf_token, now, expires_at)
    audit.append(session, f"user:{user.name}", "user.login", user.name, {})
    return LoginResult(user, token, csrf_token, expires_at)


def create_user(session: Session, name: str, role: UserRole, password: str, *, actor: str) -> User:
    validate_name("user", name)
    user = user_store.add_user(session, name, role.value, hash_password(password))
    audit.append(session, actor, "user.create", name, {"role": role.value})
    return user


def set_password(session: Session, user: User, password: str, *, actor: str) -> None:
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user_store.end_login_sessions_of(session, user)
    audit.append(session, actor, "user.password", user.name, {})


def set_role(session: Session, user: User, role: UserRole, *, actor: str) -> None:
    previous, user.role = user.role, role.value
    user_store.end_login_sessions_of(session, user)
    audit.append(session, actor, "user.role", user.name, {"role": role.value, "previous": previous})


def enrol_totp(session: Session, user: User, *, actor: str) -> str:
    """A new second-factor secret for the user (replacing any old one); returns it."""
    user.totp_secret = new_totp_secret()
    user.totp_last_step = None
    user_store.end_login_sessions_of(session, user)
    audit.append(session, actor, "user.totp_enrol", user.name, {})
    return user.totp_secret


def remove_totp(session: Session, user: User, *, actor: str) -> None:
    user.totp_secret = None
    user.totp_last_step = None
    audit.append(session, actor, "user.totp_remove", user.name, {})


def set_disabled(
    session: Session, user: User, disabled: bool, *, actor: str, now: datetime
) -> None:
    user.disabled_at = now if disabled else None
    if disabled:
        user_store.end_login_sessions_of(session, user)
    audit.append(session, actor, "user.disable" if disabled else "user.enable", user.name, {})


def ensure_bootstrap_user(database: Database) -> str | None:
    """On a fresh instance, an ``admin`` account for the review app; returns its password (to
    show once), or None once any account exists."""
    with database.write_session() as session:
        if user_store.list_users(session):
            return None
        password = secrets.token_urlsafe(18)
        create_user(session, BOOTSTRAP_USER, UserRole.ADMIN, password, actor="vigil:bootstrap")
        return password
