"""What a signal is: hash types, hash values, and the interfaces hashers implement."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from vigil.errors import InvalidHash

if TYPE_CHECKING:
    from vigil.intake import Frame

_HEX_DIGITS = frozenset(string.hexdigits.lower())


class HashType(StrEnum):
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    PDQ = "pdq"

    @property
    def hex_length(self) -> int:
        return _HEX_LENGTHS[self]

    @property
    def is_exact(self) -> bool:
        """Cryptographic hashes match only byte-identical files; PDQ matches by distance."""
        return self is not HashType.PDQ


_HEX_LENGTHS = {HashType.MD5: 32, HashType.SHA1: 40, HashType.SHA256: 64, HashType.PDQ: 64}


def normalize_hash(hash_type: HashType, value: str) -> str:
    """The canonical form of a hash (lowercase hex), or :class:`InvalidHash` saying why not."""
    cleaned = value.strip().lower()
    if len(cleaned) != hash_type.hex_length:
        raise InvalidHash(
            f"a {hash_type} hash has {hash_type.hex_length} hex characters, got {len(cleaned)}"
        )
    if not _HEX_DIGITS.issuperset(cleaned):
        raise InvalidHash(f"a {hash_type} hash is hexadecimal (0-9, a-f)")
    return cleaned


@dataclass(frozen=True, slots=True)
class FrameHash:
    """A perceptual hash of one frame as displayed (composited over a background if transparent)."""

    hash_type: HashType
    value: str
    quality: int
    frame: int
    background: str | None = None
    # None for the frame as displayed; otherwise the copy hashed to catch an edited re-upload
    # (``"flip_h"``, ``"rotate90"``, ``"trimmed"``, ``"crop_90"``...). Searched, never reported
    # as the image's own hash.
    variant: str | None = None


@dataclass(frozen=True)
class Signals:
    """Everything the hashers said about one image."""

    digests: Mapping[HashType, str]
    frame_hashes: tuple[FrameHash, ...] = ()
    frames_screened: int = 0
    # Hashes of transformed copies (flips, rotations, trimmed borders, centre crops): searched in
    # the banks, but not the image's own hashes, so not recorded or compared as such.
    variant_hashes: tuple[FrameHash, ...] = ()

    def searched_hashes(self) -> tuple[FrameHash, ...]:
        """Every perceptual hash the banks are searched for: the frames', then their variants'."""
        return self.frame_hashes + self.variant_hashes

    def pdq_record(self) -> list[dict[str, object]]:
        """The perceptual hashes as JSON-ready objects, as the API reports them."""
        entries: list[dict[str, object]] = []
        for frame_hash in self.frame_hashes:
            entry: dict[str, object] = {
                "frame": frame_hash.frame,
                "hash": frame_hash.value,
                "quality": frame_hash.quality,
            }
            if frame_hash.background:
                entry["background"] = frame_hash.background
            entries.append(entry)
        return entries

    def hashes_record(self) -> dict[str, object]:
        """Every hash, JSON-ready: ``{"sha256", "md5", "sha1", "pdq": [...]}``."""
        return {
            **{kind.value: value for kind, value in self.digests.items()},
            "pdq": self.pdq_record(),
        }


class BytesHasher(Protocol):
    """Hashes the file exactly as uploaded."""

    def hash_bytes(self, data: bytes) -> dict[HashType, str]: ...


class FrameHasher(Protocol):
    """Hashes one decoded frame; called once for every frame that differs from the one before."""

    def hash_frame(self, frame: Frame) -> list[FrameHash]: ...
