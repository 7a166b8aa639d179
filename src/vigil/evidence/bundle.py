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
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from vigil.evidence import custody
from vigil.evidence.crypto import KEY_BYTES, PassphraseKey
from vigil.evidence.custody import CustodyAction
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
    session: Session,
    vault: Vault,
    *,
    items: Sequence[EvidenceItem],
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
    """
    accessor.require_export()
    case = _checked_case(case)
    items = _checked_items(items)
    if clear_images and passphrase is not None:
        raise InvalidRequest("images in the clear need no passphrase: give one or the other")
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
    export = _Export(session, vault, accessor, now, {"case": case, "bundle": out.name})
    if clear_images:
        files, manifest_key = export.clear_images(items), None
    else:
        files, manifest_key = export.sealed_images(items, check_passphrase(passphrase))
    item_ids = [item.id for item in items]
    chain_head = custody.head(session)  # after the `exported` entries: the bundle shows them
    head = {"entry": chain_head[0], "hash": chain_head[1]}
    files[CUSTODY] = _json({"chain_head": head, "entries": custody_facts(session, item_ids)})
    files[SUMMARY] = _summary(session, settings, items, about, chain_head, now).encode()
    files[README] = _README.render(
        **about, **generated_by(), count=len(items), encrypted=not clear_images
    ).encode()
    manifest = _json(
        {
            "format": BUNDLE_FORMAT,
            **about,
            "generated_by": generated_by(),
            "chain_head": head,
            "items": _manifest_items(items, clear=clear_images, files=files),
            "files": {name: sha256_hex(data) for name, data in sorted(files.items())},
        }
    )
    members = {MANIFEST: manifest, **files}
    if manifest_key is not None:
        members[MANIFEST_MAC] = (manifest_mac(manifest_key, manifest) + "\n").encode()
    archive = _zip(members, now)
    result = BundleResult(
        out, case, tuple(item_ids), clear_images, sha256_hex(manifest), sha256_hex(archive)
    )
    audit.append(
        session,
        accessor.actor,
        "evidence.bundle",
        case,
        {
            "archive": str(out),
            "items": item_ids,
            "images": about["images"],
            "reason": accessor.reason,
            "manifest_sha256": result.manifest_sha256,
            "archive_sha256": result.archive_sha256,
        },
        at=now,
    )
    session.flush()  # any database refusal comes before the file exists
    write_new_file(out, archive)
    return result


@dataclass(frozen=True)
class _Export:
    """The images' way into a bundle, each recorded in the custody log as it is taken."""

    session: Session
    vault: Vault
    accessor: Accessor
    now: datetime
    details: dict[str, Any]

    @property
    def purpose(self) -> str:
        return f"police bundle for case {self.details['case']}"

    def clear_images(self, items: Sequence[EvidenceItem]) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for item in items:  # decrypt checks the accessor and records `exported` per item
            files[image_name(item.id, item.image_format, clear=True)] = self.vault.decrypt(
                self.session,
                item,
                self.accessor,
                purpose=self.purpose,
                now=self.now,
                details={**self.details, "images": "clear"},
            )
        return files

    def sealed_images(
        self, items: Sequence[EvidenceItem], passphrase: str
    ) -> tuple[dict[str, bytes], bytes]:
        """The sealed files as stored and ``keys.json``; and the key of the manifest's HMAC."""
        recipient = PassphraseKey.derive(passphrase)
        manifest_key = os.urandom(KEY_BYTES)
        files: dict[str, bytes] = {}
        wrapped: dict[str, str] = {}
        for item in items:
            blob = self.vault.read_blob(item)
            if sha256_hex(blob) != item.ciphertext_sha256:
                raise EvidenceIntegrityError(f"the sealed file of item {item.id} was altered")
            files[image_name(item.id, item.image_format, clear=False)] = blob
            wrapped[item.id] = recipient.wrap(self.vault.item_key(item))
        files[KEYS] = _json(_keys_document(recipient, manifest_key, wrapped))
        record_access(
            self.session,
            items,
            self.accessor,
            action=CustodyAction.EXPORTED,
            now=self.now,
            details={
                "purpose": self.purpose,
                "decrypted": False,
                **self.details,
                "images": "encrypted",
            },
        )
        return files, manifest_key


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
    items: Sequence[EvidenceItem], *, clear: bool, files: dict[str, bytes]
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
                "file_sha256": sha256_hex(files[name]),
            }
        )
    return described


def _summary(
    session: Session,
    settings: Settings,
    items: Sequence[EvidenceItem],
    about: dict[str, str],
    chain_head: tuple[int, str],
    now: datetime,
) -> str:
    item_ids = [item.id for item in items]
    return render_summary(
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
            holds=holds_facts(session, item_ids),
            custody=custody_facts(session, item_ids),
            chain_head=chain_head,
            generated_at=now,
        )
    )


def _zip(members: dict[str, bytes], now: datetime) -> bytes:
    """The archive: manifest and README first, for whoever lists it, the rest sorted."""
    order = [MANIFEST, README, *sorted(set(members) - {MANIFEST, README})]
    stamp = now.astimezone(UTC).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in order:
            info = zipfile.ZipInfo(name, date_time=stamp)
            # Images are compressed or encrypted already: deflating them gains nothing.
            info.compress_type = (
                zipfile.ZIP_STORED if name.startswith(IMAGES) else zipfile.ZIP_DEFLATED
            )
            info.external_attr = 0o600 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (0600) holding ``data``, durably; never over an existing file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise Conflict(f"{path} exists already: it is never written over") from error
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def manifest_mac(key: bytes, manifest: bytes) -> str:
    """The HMAC-SHA256 of the manifest (hex), under the key ``keys.json`` wraps."""
    return hmac.new(key, manifest, "sha256").hexdigest()


def _json(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as the manifest writes it (lower-case hex)."""
    return hashlib.sha256(data).hexdigest()
