"""The evidence vault: illegal images sealed at rest, recorded with their circumstances.

An image enters the vault in two steps, so the database never points to a file that is not on
disk: :meth:`Vault.seal` encrypts and writes the file (outside any transaction), then
:meth:`Vault.record` writes the item and its first custody entry in the caller's transaction.
Nothing here serves an image: the plaintext leaves the vault only through :meth:`Vault.decrypt`,
for someone with the child-safety permission who wrote down why, and that is in the custody log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.actions.images import ImageStore
from vigil.config import EvidenceSettings, Settings
from vigil.errors import EvidenceIntegrityError, EvidenceKeyError, Forbidden, InvalidRequest
from vigil.evidence import custody
from vigil.evidence.capture import capture_record, read_exif
from vigil.evidence.crypto import Keyring, MasterKey, SealedImage, open_sealed, seal
from vigil.evidence.custody import CustodyAction
from vigil.matching.banks import Match
from vigil.policy.rules import MATCH_FIELDS, match_details
from vigil.roles import Permission, UserRole
from vigil.store import audit
from vigil.store.database import Database
from vigil.store.models import EvidenceItem, Submission

log = logging.getLogger(__name__)

DEFAULT_KEY_FILE = "evidence.key"
MIN_REASON_CHARS = 10


class EvidenceCause(StrEnum):
    BANK_MATCH = "bank_match"  # a block bank knew the image
    CONFIRMED_ILLEGAL = "confirmed_illegal"  # a child-safety reviewer rejected it as illegal


@dataclass(frozen=True)
class Accessor:
    """Someone asking to take evidence out of the vault, and why."""

    name: str
    role: UserRole
    reason: str

    @property
    def actor(self) -> str:
        return f"user:{self.name}"

    def require_export(self) -> None:
        """Decrypting needs the child-safety permission and a written reason."""
        if not self.role.may(Permission.CHILD_SAFETY):
            raise Forbidden(
                f"{self.name} is a {self.role.value}: only child-safety staff and admins may "
                "take evidence out of the vault"
            )
        if len(self.reason.strip()) < MIN_REASON_CHARS:
            raise InvalidRequest(
                f"write down why the evidence is needed (at least {MIN_REASON_CHARS} characters)"
            )


@dataclass(frozen=True)
class SealedFile:
    """An encrypted image written to the vault, not yet recorded."""

    item_id: str
    relative_path: str
    sealed: SealedImage
    exif: dict[str, Any]


def load_keyring(
    settings: EvidenceSettings,
    data_dir: Path,
    *,
    keys_in_use: Callable[[], Collection[str]] | None = None,
) -> Keyring:
    """The configured master key and the previous ones still allowed to unwrap item keys.

    With no key configured, ``<data folder>/evidence.key`` is used, and made on first use (the
    laptop default) — but only while no item is wrapped by a key (``keys_in_use``): a key file
    that went missing is an error to fix, never silently replaced by a new key that opens nothing.
    """
    if settings.master_key:
        current = MasterKey.from_text(settings.master_key, source="evidence.master_key")
    else:
        path = settings.master_key_file or data_dir / DEFAULT_KEY_FILE
        if not path.exists() and settings.master_key_file is None:
            _make_default_key(path, keys_in_use() if keys_in_use is not None else ())
        current = MasterKey.read(path)
    previous = tuple(MasterKey.read(path) for path in settings.previous_key_files)
    return Keyring(current, previous)


def _make_default_key(path: Path, keys_in_use: Collection[str]) -> None:
    if keys_in_use:
        raise EvidenceKeyError(
            f"the master key file {path} is missing, but the vault holds items wrapped by key(s) "
            f"{', '.join(sorted(keys_in_use))}: restore the file from its backup"
        )
    try:
        MasterKey.generate().write(path)
    except FileExistsError:
        return  # another process made it first: use theirs
    log.warning(
        "made a new evidence master key at %s: back it up apart from the data folder; "
        "without it the vault cannot be read",
        path,
    )


class Vault:
    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings.evidence
        self._data_dir = settings.data_dir
        self._database = database
        self.files = ImageStore(settings.data_dir / "evidence")
        self._keyring: Keyring | None = None
        self._lock = threading.Lock()

    @property
    def keyring(self) -> Keyring:
        """Loaded on first use, so a process that never touches evidence needs no key."""
        if self._keyring is None:
            with self._lock:
                if self._keyring is None:
                    self._keyring = load_keyring(
                        self.settings, self._data_dir, keys_in_use=self._keys_in_use
                    )
        return self._keyring

    def _keys_in_use(self) -> set[str]:
        with self._database.session() as session:
            return set(keys_in_use(session))

    def seal(self, data: bytes, item_id: str | None = None) -> SealedFile:
        """Encrypt ``data`` under a new item key and write it to the vault (durably)."""
        item_id = item_id or str(uuid.uuid4())
        sealed = seal(self.keyring, item_id, data)
        relative = self.files.save(item_id, sealed.blob)
        return SealedFile(item_id, relative, sealed, read_exif(data))

    def discard(self, sealed: SealedFile) -> None:
        """Remove a file whose recording failed (its transaction rolled back)."""
        self.files.delete(sealed.relative_path)

    def record(
        self,
        session: Session,
        sealed: SealedFile,
        *,
        submission: Submission,
        cause: EvidenceCause,
        matches: Sequence[dict[str, Any]],
        actor: str,
        now: datetime,
        origin: str | None = None,
    ) -> EvidenceItem:
        """The item row and its ``stored`` custody entry, in the caller's transaction.

        ``origin``: how the image came to the vault, when not at screening or review."""
        session.flush()  # the submission row first: the item refers to it
        item = EvidenceItem(
            id=sealed.item_id,
            site_id=submission.site_id,
            submission_id=submission.id,
            uploader_id=submission.uploader_id,
            cause=cause.value,
            file_path=sealed.relative_path,
            key_id=sealed.sealed.key_id,
            wrapped_key=sealed.sealed.wrapped_key,
            ciphertext_sha256=sealed.sealed.blob_sha256,
            byte_size=submission.byte_size,
            image_format=submission.image_format,
            sha256=submission.sha256,
            md5=submission.md5,
            sha1=submission.sha1,
            pdq=list(submission.pdq),
            matches=list(matches),
            capture=capture_record(submission),
            exif=sealed.exif,
            received_at=submission.created_at,
            preserved_at=now,
            preserved_by=actor,
            retain_until=now + timedelta(days=self.settings.retention_days),
        )
        session.add(item)
        session.flush()
        facts = stored_facts(item)
        if origin is not None:
            facts["origin"] = origin
        custody.append(session, item.id, CustodyAction.STORED, actor, facts, now)
        return item

    def read_blob(self, item: EvidenceItem) -> bytes:
        """The sealed file as stored (still encrypted)."""
        if item.file_path is None:
            raise EvidenceIntegrityError(f"item {item.id} was purged: its image is gone")
        try:
            return self.files.read(item.file_path)
        except FileNotFoundError as error:
            raise EvidenceIntegrityError(f"the file of item {item.id} is missing") from error

    def item_key(self, item: EvidenceItem) -> bytes:
        if item.key_id is None or item.wrapped_key is None:
            raise EvidenceIntegrityError(f"item {item.id} was purged: its key is gone")
        return self.keyring.unwrap(item.key_id, item.wrapped_key)

    def open_image(self, item: EvidenceItem) -> bytes:
        """The plaintext, checked against its recorded SHA-256. Callers outside this module use
        :meth:`decrypt`, which checks who asks and writes it down."""
        plaintext = open_sealed(self.item_key(item), item.id, self.read_blob(item))
        if hashlib.sha256(plaintext).hexdigest() != item.sha256:
            raise EvidenceIntegrityError(f"item {item.id} decrypts to an image of another hash")
        return plaintext

    def decrypt(
        self,
        session: Session,
        item: EvidenceItem,
        accessor: Accessor,
        *,
        purpose: str,
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> bytes:
        """The image in the clear, for export: checked, then recorded in the custody log and the
        audit log before it is returned."""
        accessor.require_export()
        plaintext = self.open_image(item)
        record_access(
            session,
            [item],
            accessor,
            action=CustodyAction.EXPORTED,
            now=now,
            details={**(details or {}), "purpose": purpose, "decrypted": True},
        )
        return plaintext


def keys_in_use(session: Session) -> dict[str, int]:
    """How many unpurged items each master key wraps: an old key with none is safe to drop."""
    rows = session.execute(
        select(EvidenceItem.key_id, func.count())
        .where(EvidenceItem.purged_at.is_(None), EvidenceItem.key_id.is_not(None))
        .group_by(EvidenceItem.key_id)
    )
    return {key_id: count for key_id, count in rows if key_id is not None}


def find_item_for_submission(session: Session, submission_id: str) -> EvidenceItem | None:
    return session.scalar(select(EvidenceItem).where(EvidenceItem.submission_id == submission_id))


def record_access(
    session: Session,
    items: Iterable[EvidenceItem],
    accessor: Accessor,
    *,
    action: CustodyAction,
    now: datetime,
    details: dict[str, Any],
) -> None:
    """One custody entry per item, and one audit entry, for an access by ``accessor``."""
    ids = []
    for item in items:
        custody.append(
            session, item.id, action, accessor.actor, {"reason": accessor.reason, **details}, now
        )
        ids.append(item.id)
    audit.append(
        session,
        accessor.actor,
        f"evidence.{action.value}",
        ids[0] if len(ids) == 1 else None,
        {"items": ids, "reason": accessor.reason, **details},
        at=now,
    )


def stored_facts(item: EvidenceItem) -> dict[str, Any]:
    """What the ``stored`` custody entry fixes about an item, checked again by verify."""
    return {
        "submission_id": item.submission_id,
        "site_id": item.site_id,
        "uploader_id": item.uploader_id,
        "cause": item.cause,
        "sha256": item.sha256,
        "md5": item.md5,
        "sha1": item.sha1,
        "pdq": [entry.get("hash") for entry in item.pdq],
        "ciphertext_sha256": item.ciphertext_sha256,
        "byte_size": item.byte_size,
        "received_at": item.received_at.isoformat(),
        "capture_sha256": _digest(item.capture),
        "exif_sha256": _digest(item.exif),
        "matches_sha256": _digest(item.matches),
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def match_records(matches: Iterable[Match]) -> list[dict[str, Any]]:
    """The bank entries an image matched, as stored with the item."""
    return [match_details(match) for match in matches]


def reason_matches(reasons: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same, from a submission's recorded reasons (the closest match per bank)."""
    return [
        {key: reason.get(key) for key in MATCH_FIELDS}
        for reason in reasons
        if reason.get("code") == "bank_match"
    ]
