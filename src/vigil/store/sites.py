"""Sites and their API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.errors import NotFound
from vigil.names import validate_name
from vigil.store.models import ApiKey, Site
from vigil.store.types import utcnow

KEY_PREFIX = "vgl_"
_SECRET_PREFIX = "whsec_"  # noqa: S105 - a label, not a secret


class Role(StrEnum):
    """What an API key may do; each role includes the ones before it."""

    SCREEN = "screen"  # the site's integration: screen images, read their submissions
    MODERATOR = "moderator"  # also decide on held submissions
    ADMIN = "admin"  # also manage banks, keys and webhooks, for every site

    def allows(self, required: Role) -> bool:
        return _RANK[self] >= _RANK[required]


_RANK = {Role.SCREEN: 0, Role.MODERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class SiteRef:
    id: int
    name: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key, its role and its site."""

    key_prefix: str
    role: Role
    site: SiteRef

    @property
    def actor(self) -> str:
        """How this caller appears in the audit log."""
        return f"key:{self.key_prefix} ({self.site.name})"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_site(session: Session, name: str) -> Site:
    validate_name("site", name)
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        site = Site(name=name)
        session.add(site)
        session.flush()
    return site


def get_site(session: Session, name: str) -> Site:
    site = None if "\x00" in name else session.scalar(select(Site).where(Site.name == name))
    if site is None:
        raise NotFound(f"no site named {name!r}")
    return site


def create_api_key(session: Session, site: Site, role: Role) -> tuple[ApiKey, str]:
    """A new key; the plain key is returned once and only its hash is stored."""
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(site_id=site.id, role=role.value, key_hash=hash_key(plain), prefix=plain[:12])
    session.add(key)
    session.flush()
    return key, plain


def find_api_key(session: Session, plain: str) -> tuple[ApiKey, Site] | None:
    row = session.execute(
        select(ApiKey, Site)
        .join(Site, Site.id == ApiKey.site_id)
        .where(ApiKey.key_hash == hash_key(plain), ApiKey.revoked_at.is_(None))
    ).first()
    return None if row is None else (row[0], row[1])


def count_api_keys(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ApiKey)) or 0)


def list_api_keys(session: Session) -> list[tuple[ApiKey, Site]]:
    rows = session.execute(
        select(ApiKey, Site).join(Site, Site.id == ApiKey.site_id).order_by(ApiKey.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def revoke_api_key(session: Session, prefix: str) -> ApiKey:
    keys = session.scalars(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).all()
    if len(keys) != 1:
        raise NotFound(f"no single active key starts with {prefix!r}")
    keys[0].revoked_at = utcnow()
    return keys[0]


def set_webhook(site: Site, url: str | None, *, rotate_secret: bool) -> str | None:
    """Point the site's notifications at ``url``; returns the signing secret."""
    site.webhook_url = url
    if url and (rotate_secret or not site.webhook_secret):
        site.webhook_secret = _SECRET_PREFIX + secrets.token_urlsafe(32)
    return site.webhook_secret
