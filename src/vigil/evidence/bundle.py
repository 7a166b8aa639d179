"""The police evidence bundle: one archive an investigating force opens with standard tools.

The archive (a zip) holds the vault's sealed files exactly as stored, never decrypted, with each
item key re-wrapped for a passphrase the recipient is given separately (``keys.json``); only with
``clear_images`` are the images decrypted into it instead. Beside them: ``manifest.json`` (the
case, who made the bundle and why, every item's hashes and the SHA-256 of every other file),
``manifest.hmac`` (an HMAC of the manifest under a key wrapped like the item keys, so changing
the manifest is detected too), ``custody.json``, ``summary.html`` and a ``README.txt`` that says
how to check and open everything without Vigil.

This module writes bundles; :mod:`vigil.evidence.bundle_open` checks and opens them. The names of
the files, the manifest's HMAC and the file hashes both sides use are defined here, once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.config import Settings
from vigil.errors import (
    Conflict,
    EvidenceIntegrityError,
    InvalidRequest,
    NotFound,
)
from vigil.evidence import custody, files
from vigil.evidence.crypto import KEY_BYTES, PassphraseKey
from vigil.evidence.custody import CustodyAction
from vigil.evidence.files import NewFile
from vigil.evidence.summary import (
    Summary,
    custody_facts,
    generated_by,
    holds_facts,
    items_facts,
    provider_facts,
    render_summary,
    shown_time,
    users_facts,
    utc_text,
)
from vigil.evidence.vault import Accessor, Vault, record_access
from vigil.store import audit
from vigil.store.database import Database
from vigil.store.models import EvidenceItem

BUNDLE_FORMAT = "vigil.police-bundle/1"
MANIFEST, MANIFEST_MAC, KEYS = "manifest.json", "manifest.hmac", "keys.json"
CUSTODY, SUMMARY, README = "custody.json", "summary.html", "README.txt"
IMAGES = "images/"
SEALED_EXTENSION = "vge"
MIN_PASSPHRASE_CHARS = 12
MAX_CASE_CHARS = 200
_EXTENSIONS = {"jpeg": "jpg", "tiff": "tif"}
# Plain text: no autoescaping (the README is not HTML).
_README = Environment(
    loader=PackageLoader("vigil.evidence", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
).get_template("bundle-readme.txt")


@dataclass(frozen=True)
class BundleResult:
    path: Path
    case: str
    item_ids: tuple[str, ...]
    clear_images: bool
    # Note it down or send it apart from the archive: it identifies this exact manifest.
    manifest_sha256: str
    archive_sha256: str


def find_items(session: Session, item_ids: Sequence[str]) -> list[EvidenceItem]:
    """The items with these ids, in the order given (each once); unknown ids are refused."""
    wanted = list(dict.fromkeys(item_ids))
    found = {
        item.id: item
        for item in session.scalars(select(EvidenceItem).where(EvidenceItem.id.in_(wanted)))
    }
    unknown = [item_id for item_id in wanted if item_id not in found]
    if unknown:
        raise NotFound(f"no evidence item {', '.join(unknown)}")
    return [found[item_id] for item_id in wanted]


def check_passphrase(passphrase: str | None) -> str:
    if passphrase is None or not passphrase.strip():
        raise InvalidRequest("give the recipient's passphrase: the images are encrypted for it")
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InvalidRequest(f"a bundle passphrase has at least {MIN_PASSPHRASE_CHARS} characters")
    return passphrase


def clear_extension(image_format: str) -> str:
    """The file extension of an image in the clear: ``jpg`` for ``jpeg`` and the like."""
    return _EXTENSIONS.get(image_format, image_format)


def image_name(item_id: str, image_format: str, *, clear: bool) -> str:
    """``images/<item id>.vge`` (sealed), or ``images/<item id>.jpg`` and the like (clear)."""
    extension = clear_extension(image_format) if clear else SEALED_EXTENSION
    return f"{IMAGES}{item_id}.{extension}"


def export_bundle(
    database: Database,
    vault: Vault,
    *,
    item_ids: Sequence[str],
    case: str,
    accessor: Accessor,
    out: Path,
    passphrase: str | None,
    clear_images: bool,
    settings: Settings,
    now: datetime,
) -> BundleResult:
    """Write the bundle for ``case`` to ``out`` (a new file, 0600); record custody and audit.

    Exporting needs the child-safety permission and a reason even when the images stay
    encrypted: the archive still holds the uploader's personal data and the images' keys.
    Nothing is written or recorded unless every check passes.

    Reading every image, deriving the passphrase's key and writing the archive take long, so no
    transaction is open meanwhile (screening would wait on the write lock): the facts come from
    one short read, the archive is built in a temporary file beside ``out``, and one short write
    records the export and links the finished file into place. ``custody.json`` therefore ends
    at the log's head when the export began; the ``exported`` entries that follow it in the log
    carry the manifest's SHA-256.
    """
    accessor.require_export()  # before any image is read, let alone decrypted
    case = _checked_case(case)
    if clear_images and passphrase is not None:
        raise InvalidRequest("images in the clear need no passphrase: give one or the other")
    recipient = None if clear_images else check_passphrase(passphrase)
    if out.exists() or out.is_symlink():
        raise Conflict(f"{out} exists already: a bundle is never written over another file")
    if not out.parent.is_dir():
        raise InvalidRequest(f"the folder {out.parent} does not exist")
    about = {
        "case": case,
        "created_at": utc_text(now),
        "created_by": accessor.actor,
        "role": accessor.role.value,
        "reason": accessor.reason,
        "images": "clear" if clear_images else "encrypted",
    }
    with database.session() as session:
        facts = _read_facts(session, settings, item_ids, about, now)
    try:
        built = NewFile.beside(out, suffix=".part")
    except OSError as error:
        raise InvalidRequest(f"cannot write in {out.parent}: {error}") from error
    try:
        with built, _Archive(built.handle, now) as archive:
            manifest = _write_members(archive, vault, facts, about, recipient)
        result = BundleResult(
            out,
            case,
            tuple(item.id for item in facts.items),
            clear_images,
            sha256_hex(manifest),
            built.sha256(),
        )
        _record_and_place(database, built, result, accessor, about, now)
    finally:
        built.discard()
    return result


@dataclass(frozen=True)
class _Facts:
    """What the bundle says besides the images, read in one transaction."""

    items: list[EvidenceItem]  # detached from their session
    chain_head: tuple[int, str]
    custody: bytes
    summary: bytes


def _read_facts(
    session: Session,
    settings: Settings,
    item_ids: Sequence[str],
    about: dict[str, str],
    now: datetime,
) -> _Facts:
    items = _checked_items(find_items(session, item_ids))
    chain_head = custody.head(session)
    ids = [item.id for item in items]
    # Entries appended after the head was read (PostgreSQL reads committed rows per statement)
    # stay out, so custody.json ends exactly at the head it names.
    entries = [entry for entry in custody_facts(session, ids) if entry["id"] <= chain_head[0]]
    head = {"entry": chain_head[0], "hash": chain_head[1]}
    page = render_summary(
        Summary(
            title=f"Police evidence bundle: {about['case']}",
            about=[
                ("Case", about["case"]),
                (
                    "Made",
                    f"{shown_time(about['created_at'])} by {about['created_by']} ({about['role']})",
                ),
                ("Reason", about["reason"]),
                ("Images", f"{len(items)}, {about['images']} in the archive"),
            ],
            provider=provider_facts(settings),
            users=users_facts(session, items),
            items=items_facts(session, items),
            holds=holds_facts(session, ids),
            custody=entries,
            chain_head=chain_head,
            generated_at=now,
        )
    )
    for item in items:
        session.expunge(item)
    return _Facts(items, chain_head, _json({"chain_head": head, "entries": entries}), page.encode())


def _write_members(
    archive: _Archive,
    vault: Vault,
    facts: _Facts,
    about: dict[str, str],
    passphrase: str | None,
) -> bytes:
    """Every member into ``archive``, one image in memory at a time; the manifest written."""
    clear = passphrase is None
    archive.add(
        README,
        _README.render(
            **about, **generated_by(), count=len(facts.items), encrypted=not clear
        ).encode(),
    )
    manifest_key: bytes | None = None
    if passphrase is None:
        for item in facts.items:
            # The accessor was checked by export_bundle; the decryption is recorded with the
            # export, before the archive is linked into place.
            archive.add(image_name(item.id, item.image_format, clear=True), vault.open_image(item))
    else:
        recipient = PassphraseKey.derive(passphrase)
        manifest_key = os.urandom(KEY_BYTES)
        wrapped: dict[str, str] = {}
        for item in facts.items:
            blob = vault.read_blob(item)
            if sha256_hex(blob) != item.ciphertext_sha256:
                raise EvidenceIntegrityError(f"the sealed file of item {item.id} was altered")
            archive.add(image_name(item.id, item.image_format, clear=False), blob)
            wrapped[item.id] = recipient.wrap(vault.item_key(item))
        archive.add(KEYS, _json(_keys_document(recipient, manifest_key, wrapped)))
    archive.add(CUSTODY, facts.custody)
    archive.add(SUMMARY, facts.summary)
    manifest = _json(
        {
            "format": BUNDLE_FORMAT,
            **about,
            "generated_by": generated_by(),
            "chain_head": {"entry": facts.chain_head[0], "hash": facts.chain_head[1]},
            "items": _manifest_items(facts.items, clear=clear, hashes=archive.hashes),
            "files": dict(sorted(archive.hashes.items())),
        }
    )
    archive.add(MANIFEST, manifest)
    if manifest_key is not None:
        archive.add(MANIFEST_MAC, (manifest_mac(manifest_key, manifest) + "\n").encode())
    return manifest


def _record_and_place(
    database: Database,
    built: NewFile,
    result: BundleResult,
    accessor: Accessor,
    about: dict[str, str],
    now: datetime,
) -> None:
    """Record the export (custody and audit) and link the built archive to its name, together:
    a refusal of either leaves neither."""
    hashes = {"manifest_sha256": result.manifest_sha256, "archive_sha256": result.archive_sha256}
    placed = False
    try:
        with database.write_session() as session:
            # An item purged while the archive was built is gone from the vault: refuse it.
            items = _checked_items(find_items(session, result.item_ids))
            record_access(
                session,
                items,
                accessor,
                action=CustodyAction.EXPORTED,
                now=now,
                details={
                    "purpose": f"police bundle for case {result.case}",
                    "decrypted": result.clear_images,
                    "case": result.case,
                    "bundle": result.path.name,
                    "images": about["images"],
                    **hashes,
                },
            )
            audit.append(
                session,
                accessor.actor,
                "evidence.bundle",
                result.case,
                {
                    "archive": str(result.path),
                    "items": list(result.item_ids),
                    "images": about["images"],
                    "reason": accessor.reason,
                    **hashes,
                },
                at=now,
            )
            session.flush()  # any database refusal comes before the file is in place
            _place(built)
            placed = True
    except BaseException:
        if placed:  # linked, but the commit failed: an unrecorded export is not released
            result.path.unlink(missing_ok=True)
        raise


class _Archive:
    """The zip being written to the bundle's file: members dated ``now``, each one hashed."""

    def __init__(self, handle: BinaryIO, now: datetime) -> None:
        self.hashes: dict[str, str] = {}  # every member's SHA-256, for the manifest
        self._zip = zipfile.ZipFile(handle, "w")
        self._stamp = now.astimezone(UTC).timetuple()[:6]

    def add(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=self._stamp)
        # Images are compressed or encrypted already: deflating them gains nothing.
        info.compress_type = zipfile.ZIP_STORED if name.startswith(IMAGES) else zipfile.ZIP_DEFLATED
        info.external_attr = 0o600 << 16
        self._zip.writestr(info, data)
        self.hashes[name] = sha256_hex(data)

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Finish the zip (its file is made durable by the NewFile holding it)."""
        self._zip.close()


def _place(built: NewFile) -> None:
    """Give the finished archive its name, never over an existing file, durably."""
    try:
        built.place()
    except FileExistsError as error:
        raise Conflict(
            f"{built.path} exists already: a bundle is never written over another file"
        ) from error
    except OSError as error:
        raise InvalidRequest(f"cannot write {built.path}: {error}") from error


def _checked_case(case: str) -> str:
    case = case.strip()
    if not case:
        raise InvalidRequest("name the case the bundle is for (--case NAME)")
    if len(case) > MAX_CASE_CHARS or any(ord(char) < 32 for char in case):
        raise InvalidRequest(f"a case name is one line of at most {MAX_CASE_CHARS} characters")
    return case


def _checked_items(items: Sequence[EvidenceItem]) -> list[EvidenceItem]:
    unique = list({item.id: item for item in items}.values())
    if not unique:
        raise InvalidRequest("name at least one evidence item to export")
    purged = [item.id for item in unique if item.purged_at is not None or item.file_path is None]
    if purged:
        raise Conflict(f"item {', '.join(purged)} was purged: its image is gone")
    return unique


def _keys_document(
    recipient: PassphraseKey, manifest_key: bytes, wrapped: dict[str, str]
) -> dict[str, Any]:
    return {
        "format": BUNDLE_FORMAT,
        "kdf": {**recipient.kdf_parameters(), "length": KEY_BYTES, "passphrase": "UTF-8"},
        "cipher": {
            "name": "AES-256-GCM",
            "file": "b'VGE1' + 12-byte nonce + ciphertext + 16-byte tag",
            "associated_data": "the item id as UTF-8",
        },
        "manifest_key": recipient.wrap(manifest_key),
        "keys": wrapped,
    }


def _manifest_items(
    items: Sequence[EvidenceItem], *, clear: bool, hashes: dict[str, str]
) -> list[dict[str, Any]]:
    described = []
    for item in items:
        name = image_name(item.id, item.image_format, clear=clear)
        described.append(
            {
                "id": item.id,
                "site_id": item.site_id,
                "uploader_id": item.uploader_id,
                "cause": item.cause,
                "received_at": utc_text(item.received_at),
                "format": item.image_format,
                "byte_size": item.byte_size,
                "md5": item.md5,
                "sha1": item.sha1,
                "sha256": item.sha256,
                "pdq": [entry.get("hash") for entry in item.pdq],
                "file": name,
                "file_sha256": hashes[name],
            }
        )
    return described


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (0600) holding ``data``, durably; an existing file is refused (Conflict)."""
    try:
        files.write_new_file(path, data)
    except FileExistsError as error:
        raise Conflict(f"{path} exists already: it is never written over") from error


def manifest_mac(key: bytes, manifest: bytes) -> str:
    """The HMAC-SHA256 of the manifest (hex), under the key ``keys.json`` wraps."""
    return hmac.new(key, manifest, "sha256").hexdigest()


def _json(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as the manifest writes it (lower-case hex)."""
    return hashlib.sha256(data).hexdigest()
