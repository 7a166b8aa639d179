"""Encryption of evidence at rest: a key per item, wrapped by a master key.

Each image is sealed with AES-256-GCM under a random key of its own, with the item's id as
associated data (a file moved to another item's name fails to open). The item key is stored only
wrapped (AES key wrap, RFC 3394) by a master key, so rotating the master key re-wraps 32-byte keys
and never touches the images. A master key is known by a short id derived from it, which each item
records, so old keys can be kept until every item has been re-wrapped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from vigil.errors import EvidenceIntegrityError, EvidenceKeyError
from vigil.evidence.files import write_new_file

KEY_BYTES = 32
NONCE_BYTES = 12
# The first bytes of every sealed file: the format, so a later one can be told apart.
SEALED_MAGIC = b"VGE1"
# scrypt for passphrases that protect exported bundles: about 0.1 s and 32 MiB per attempt.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_BYTES = 16


@dataclass(frozen=True, repr=False)
class MasterKey:
    key: bytes

    @property
    def id(self) -> str:
        return hashlib.sha256(b"vigil evidence master key\0" + self.key).hexdigest()[:16]

    def __repr__(self) -> str:  # never the key itself in logs or tracebacks
        return f"MasterKey(id={self.id!r})"

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str, *, source: str) -> MasterKey:
        """A key written as base64 (standard or URL-safe) or hex, as ``vigil evidence new-key``
        writes it."""
        text = text.strip()
        key: bytes | None = None
        try:
            key = bytes.fromhex(text) if len(text) == 2 * KEY_BYTES else None
        except ValueError:
            key = None
        if key is None:
            try:
                key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
            except (binascii.Error, ValueError):
                key = None
        if key is None or len(key) != KEY_BYTES:
            raise EvidenceKeyError(
                f"{source} does not hold a master key: expected {KEY_BYTES} bytes as base64 "
                "(make one with `vigil evidence new-key FILE`)"
            )
        return cls(key)

    @classmethod
    def read(cls, path: Path) -> MasterKey:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise EvidenceKeyError(f"cannot read the master key file {path}: {error}") from error
        return cls.from_text(text, source=str(path))

    def as_text(self) -> str:
        return base64.b64encode(self.key).decode("ascii")

    def write(self, path: Path) -> None:
        """Create ``path`` holding this key, readable by its owner only; never overwrites
        (FileExistsError)."""
        write_new_file(path, (self.as_text() + "\n").encode("ascii"))


class Keyring:
    """The current master key, which wraps new item keys, and older ones that still unwrap."""

    def __init__(self, current: MasterKey, previous: tuple[MasterKey, ...] = ()) -> None:
        self.current = current
        self._by_id = {key.id: key for key in (*previous, current)}

    def __repr__(self) -> str:
        return f"Keyring(current={self.current.id!r}, known={sorted(self._by_id)!r})"

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    def wrap(self, item_key: bytes) -> tuple[str, str]:
        """(master key id, the item key wrapped by the current master key, as base64)."""
        wrapped = aes_key_wrap(self.current.key, item_key)
        return self.current.id, base64.b64encode(wrapped).decode("ascii")

    def unwrap(self, key_id: str, wrapped: str) -> bytes:
        master = self._by_id.get(key_id)
        if master is None:
            raise EvidenceKeyError(
                f"the item key is wrapped by master key {key_id}, which is not configured "
                "(add its file to evidence.previous_key_files)"
            )
        try:
            return aes_key_unwrap(master.key, base64.b64decode(wrapped))
        except (InvalidUnwrap, binascii.Error, ValueError) as error:
            raise EvidenceIntegrityError(
                f"the wrapped item key does not open with master key {key_id}: it was altered"
            ) from error

    def rewrap(self, key_id: str, wrapped: str) -> tuple[str, str]:
        """The same item key, wrapped by the current master key instead."""
        return self.wrap(self.unwrap(key_id, wrapped))


@dataclass(frozen=True)
class SealedImage:
    """An image encrypted for one item: the file's bytes and the key to store beside it."""

    blob: bytes
    key_id: str
    wrapped_key: str

    @property
    def blob_sha256(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()


def seal(keyring: Keyring, item_id: str, plaintext: bytes) -> SealedImage:
    item_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(item_key).encrypt(nonce, plaintext, item_id.encode())
    key_id, wrapped = keyring.wrap(item_key)
    return SealedImage(SEALED_MAGIC + nonce + ciphertext, key_id, wrapped)


def open_sealed(item_key: bytes, item_id: str, blob: bytes) -> bytes:
    """The image from a sealed file, given its (unwrapped) item key."""
    if not blob.startswith(SEALED_MAGIC) or len(blob) < len(SEALED_MAGIC) + NONCE_BYTES + 16:
        raise EvidenceIntegrityError(f"the file of item {item_id} is not a sealed evidence file")
    nonce = blob[len(SEALED_MAGIC) : len(SEALED_MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(item_key).decrypt(
            nonce, blob[len(SEALED_MAGIC) + NONCE_BYTES :], item_id.encode()
        )
    except InvalidTag as error:
        raise EvidenceIntegrityError(
            f"the file of item {item_id} fails its authentication tag: it was altered"
        ) from error


@dataclass(frozen=True)
class PassphraseKey:
    """A key derived from a recipient's passphrase (scrypt), to wrap item keys in a bundle."""

    salt: bytes
    key: bytes

    @classmethod
    def derive(cls, passphrase: str, salt: bytes | None = None) -> PassphraseKey:
        salt = salt if salt is not None else os.urandom(SALT_BYTES)
        kdf = Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
        return cls(salt, kdf.derive(passphrase.encode("utf-8")))

    def wrap(self, item_key: bytes) -> str:
        return base64.b64encode(aes_key_wrap(self.key, item_key)).decode("ascii")

    def unwrap(self, wrapped: str) -> bytes:
        try:
            return aes_key_unwrap(self.key, base64.b64decode(wrapped))
        except (InvalidUnwrap, binascii.Error, ValueError) as error:
            raise EvidenceKeyError(
                "wrong passphrase (or the bundle's key file was altered)"
            ) from error

    def kdf_parameters(self) -> dict[str, object]:
        return {
            "kdf": "scrypt",
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": base64.b64encode(self.salt).decode("ascii"),
            "wrap": "AES key wrap (RFC 3394)",
        }
