"""Opening a police evidence bundle: check every file against the manifest, then write the images.

The reading side of :mod:`vigil.evidence.bundle`. Nothing in the archive is trusted until it is
checked: the manifest against the SHA-256 noted at export or its HMAC (under the key the
passphrase unwraps), every other file against the manifest, every image against its recorded
SHA-256; and no name taken from the manifest may lead out of the output folder. A bundle with
images in the clear has no HMAC, so it is refused without the noted SHA-256 unless the caller
explicitly accepts an unverified manifest. Sizes are checked before anything is decompressed.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from vigil.errors import (
    Conflict,
    EvidenceIntegrityError,
    EvidenceKeyError,
    InvalidRequest,
    NotFound,
)
from vigil.evidence.bundle import (
    BUNDLE_FORMAT,
    KEYS,
    MANIFEST,
    MANIFEST_MAC,
    clear_extension,
    image_name,
    manifest_mac,
    sha256_hex,
    write_new_file,
)
from vigil.evidence.crypto import PassphraseKey, open_sealed

# What a file name taken from a manifest may look like: never a path out of the output folder.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_SAFE_EXTENSION = re.compile(r"[a-z0-9]{1,8}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Every member is read into memory, so the sizes the archive declares are checked first (a zip
# bomb is a few kilobytes that inflate to gigabytes). A bundle holds a few files per item.
MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 2 * 1024**3


def needs_passphrase(archive: Path) -> bool:
    """Whether the bundle's images are encrypted (it has a key file)."""
    with _open_zip(archive) as bundle:
        return KEYS in bundle.namelist()


def open_bundle(
    archive: Path,
    passphrase: str | None,
    out_dir: Path,
    *,
    manifest_sha256: str | None = None,
    unverified: bool = False,
) -> list[Path]:
    """Check every file of a bundle, then write its images, in the clear, into ``out_dir``.

    ``manifest_sha256`` (printed when the bundle was made) proves the manifest unchanged. A
    bundle with images in the clear has no passphrase to authenticate it otherwise, so without
    it it is refused, unless ``unverified``: then its files are checked only against a manifest
    anyone could have rewritten along with them.
    """
    with _open_zip(archive) as bundle:
        if KEYS not in bundle.namelist() and not manifest_sha256 and not unverified:
            raise InvalidRequest(
                "this bundle's images are in the clear and it has no HMAC: give the manifest "
                "SHA-256 printed when it was exported (--manifest-sha256) to prove it unchanged, "
                "or --unverified to open it without that proof"
            )
        members = _read_members(bundle)
    manifest = _parse_manifest(members, manifest_sha256)
    for name, digest in manifest["files"].items():
        if name not in members:
            raise EvidenceIntegrityError(f"the bundle lacks {name}, which its manifest lists")
        if not hmac.compare_digest(sha256_hex(members[name]), str(digest)):
            raise EvidenceIntegrityError(f"{name} differs from its SHA-256 in the manifest")
    unlisted = set(members) - set(manifest["files"]) - {MANIFEST, MANIFEST_MAC}
    if unlisted:
        raise EvidenceIntegrityError(f"the manifest does not list {', '.join(sorted(unlisted))}")
    encrypted = manifest.get("images") == "encrypted"
    if encrypted != (KEYS in members):  # so a changed mode cannot skip the manifest's HMAC
        raise EvidenceIntegrityError(
            "manifest.json was altered: its image mode is not the bundle's"
        )
    keys: dict[str, Any] = {}
    recipient: PassphraseKey | None = None
    if encrypted:
        if not passphrase:
            raise EvidenceKeyError("the images in this bundle are encrypted: give the passphrase")
        recipient, keys = _recipient_key(members, passphrase)
    images: dict[Path, bytes] = {}
    for entry in manifest["items"]:
        item_id, extension, sha256 = _safe_item(entry)
        data = members.get(image_name(item_id, extension, clear=not encrypted), b"")
        if recipient is not None:
            data = open_sealed(recipient.unwrap(keys["keys"][item_id]), item_id, data)
        if not hmac.compare_digest(sha256_hex(data), sha256):
            raise EvidenceIntegrityError(f"item {item_id} is not the image its manifest describes")
        images[out_dir / f"{item_id}.{extension}"] = data
    existing = [str(path) for path in images if path.exists() or path.is_symlink()]
    if existing:
        raise Conflict(f"{', '.join(existing)} exists already: nothing was written")
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, data in images.items():
        write_new_file(path, data)
    return list(images)


def _recipient_key(
    members: dict[str, bytes], passphrase: str
) -> tuple[PassphraseKey, dict[str, Any]]:
    """The passphrase's key and the key file, once the manifest's HMAC proves it unchanged."""
    try:
        keys = json.loads(members[KEYS])
        salt = base64.b64decode(keys["kdf"]["salt"], validate=True)
        wrapped_manifest_key = str(keys["manifest_key"])
    except (KeyError, ValueError, TypeError) as error:
        raise EvidenceIntegrityError(f"keys.json is missing or damaged: {error}") from error
    recipient = PassphraseKey.derive(passphrase, salt)
    manifest_key = recipient.unwrap(wrapped_manifest_key)  # EvidenceKeyError: wrong passphrase
    noted = members.get(MANIFEST_MAC, b"").decode(errors="replace").strip()
    if not hmac.compare_digest(manifest_mac(manifest_key, members[MANIFEST]), noted):
        raise EvidenceIntegrityError("manifest.json was altered: its HMAC does not match")
    return recipient, keys


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except FileNotFoundError as error:
        raise NotFound(f"no file {archive}") from error
    except (zipfile.BadZipFile, OSError) as error:
        raise EvidenceIntegrityError(f"{archive} is not a readable bundle: {error}") from error


def _read_members(bundle: zipfile.ZipFile) -> dict[str, bytes]:
    """Every file in the archive, once the sizes it declares are checked against the limits
    (reading stops at a member's declared size, so the declared total bounds the memory)."""
    infos = bundle.infolist()
    if len(infos) > MAX_MEMBERS:
        raise EvidenceIntegrityError(
            f"the archive holds {len(infos)} files, more than a bundle's limit of {MAX_MEMBERS}: "
            "it is not a Vigil bundle"
        )
    unpacked = sum(info.file_size for info in infos)
    if unpacked > MAX_UNPACKED_BYTES:
        raise EvidenceIntegrityError(
            f"the archive unpacks to {unpacked} bytes, more than a bundle's limit of "
            f"{MAX_UNPACKED_BYTES}: it is not opened"
        )
    try:
        return {name: bundle.read(name) for name in bundle.namelist() if not name.endswith("/")}
    except (zipfile.BadZipFile, OSError, EOFError) as error:  # a CRC mismatch, a cut file
        raise EvidenceIntegrityError(f"the bundle is damaged: {error}") from error


def _parse_manifest(members: dict[str, bytes], expected_sha256: str | None) -> dict[str, Any]:
    if MANIFEST not in members:
        raise EvidenceIntegrityError("the bundle has no manifest.json: it is not a Vigil bundle")
    if expected_sha256 and not hmac.compare_digest(sha256_hex(members[MANIFEST]), expected_sha256):
        raise EvidenceIntegrityError("manifest.json differs from the SHA-256 noted at export")
    try:
        manifest = json.loads(members[MANIFEST])
        if manifest.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"unknown format {manifest.get('format')!r}")
        if not isinstance(manifest["files"], dict) or not isinstance(manifest["items"], list):
            raise ValueError("no file or item list")
    except (ValueError, KeyError, AttributeError, UnicodeDecodeError) as error:
        raise EvidenceIntegrityError(f"manifest.json was altered or damaged: {error}") from error
    return dict(manifest)


def _safe_item(entry: Any) -> tuple[str, str, str]:
    """A manifest item's id, file extension and SHA-256, refusing anything but a plain id and
    format (a tampered manifest must not write outside the output folder)."""
    if not isinstance(entry, dict):
        raise EvidenceIntegrityError("the manifest's item list was altered")
    item_id, image_format = str(entry.get("id", "")), str(entry.get("format", ""))
    extension = clear_extension(image_format)
    sha256 = str(entry.get("sha256", ""))
    if not (
        _SAFE_ID.fullmatch(item_id)
        and _SAFE_EXTENSION.fullmatch(extension)
        and _SHA256.fullmatch(sha256)
    ):
        raise EvidenceIntegrityError(f"the manifest's item {item_id[:64]!r} was altered")
    return item_id, extension, sha256
