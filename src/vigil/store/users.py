"""Review-app users, their login sessions and what they have been exposed to."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from vigil.errors import Conflict, NotFound
from vigil.store.models import Exposure, LoginSession, User


def token_hash(token: str) -> str:
    # Tokens are 256-bit random strings: a fast hash is enough to make a stolen table useless.
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(session: Session, name: str, role: str, password_hash: str) -> User:
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"a user named {name!r} exists already")
    user = User(name=name, role=role, password_hash=password_hash)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, name: str, *, for_update: bool = False) -> User | None:
    """The user; ``for_update`` locks the row until the transaction ends (PostgreSQL), so
    concurrent sign-ins count failures and spend codes one after another."""
    if "\x00" in name:  # never a user name (and PostgreSQL would refuse it)
        return None
    query = select(User).where(User.name == name)
    return session.scalar(query.with_for_update() if for_update else query)


def get_user(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.name)).all()


def add_login_session(
    session: Session, user: User, token: str, csrf_token: str, now: datetime, expires_at: datetime
) -> LoginSession:
    login = LoginSession(
        token_hash=token_hash(token),
        user_id=user.id,
        csrf_token=csrf_token,
        created_at=now,
        last_seen_at=now,
        expires_at=expires_at,
    )
    session.add(login)
    return login


def find_login_session(session: Session, token: str) -> tuple[LoginSession, User] | None:
    row = session.execute(
        select(LoginSession, User)
        .join(User, User.id == LoginSession.user_id)
        .where(LoginSession.token_hash == token_hash(token))
    ).first()
    return None if row is None else (row[0], row[1])


def touch_login_session(session: Session, token: str, now: datetime) -> None:
    session.execute(
        update(LoginSession)
        .where(LoginSession.token_hash == token_hash(token))
        .values(last_seen_at=now)
    )


def end_login_session(session: Session, token: str) -> None:
    session.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash(token)))


def end_login_sessions_of(session: Session, user: User) -> None:
    session.execute(delete(LoginSession).where(LoginSession.user_id == user.id))


def end_expired_login_sessions(session: Session, now: datetime) -> None:
    session.execute(delete(LoginSession).where(LoginSession.expires_at < now))


def record_exposure(session: Session, user_id: int, submission_id: str, now: datetime) -> None:
    session.add(Exposure(user_id=user_id, submission_id=submission_id, at=now))


def count_exposures(session: Session, user_id: int, since: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Exposure)
            .where(Exposure.user_id == user_id, Exposure.at >= since)
        )
        or 0
    )
