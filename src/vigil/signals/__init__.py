"""Signals: what can be said about an image. Hashers today; classifiers plug in beside them."""

from __future__ import annotations

from collections.abc import Container, Sequence

from vigil.config import MatchingSettings
from vigil.intake import DecodedImage, Frame
from vigil.signals.base import (
    BytesHasher,
    FrameHash,
    FrameHasher,
    HashType,
    Signals,
    normalize_hash,
)
from vigil.signals.digests import FileDigester
from vigil.signals.pdq import PdqHasher
from vigil.signals.variants import VariantOptions

__all__ = [
    "BytesHasher",
    "FileDigester",
    "FrameHash",
    "FrameHasher",
    "HashType",
    "PdqHasher",
    "Signals",
    "VariantOptions",
    "compute_signals",
    "default_hashers",
    "hash_image",
    "normalize_hash",
]


def default_hashers(
    matching: MatchingSettings | None = None,
) -> tuple[list[BytesHasher], list[FrameHasher]]:
    """The hashers screening runs. With ``matching``, PDQ also hashes the edited copies those
    settings ask for (mirror images, trimmed borders, centre crops), to search for them; without,
    only the image's own hashes (what a bank entry or ``vigil hash`` records)."""
    variants = VariantOptions.from_settings(matching) if matching is not None else None
    return [FileDigester()], [PdqHasher(variants)]


def compute_signals(
    image: DecodedImage,
    bytes_hashers: Sequence[BytesHasher],
    frame_hashers: Sequence[FrameHasher],
) -> Signals:
    """Run every hasher over the image: byte hashers once, frame hashers on each distinct frame.

    Frames identical to the one before (common in animations) are counted as screened but not
    hashed again: their hashes would be the same. Hashes of edited copies (a ``variant``) go to
    ``variant_hashes``, the image's own to ``frame_hashes``.
    """
    signals, _ = hash_image(image, bytes_hashers, frame_hashers)
    return signals


def hash_image(
    image: DecodedImage,
    bytes_hashers: Sequence[BytesHasher],
    frame_hashers: Sequence[FrameHasher],
    keep: Container[int] = (),
) -> tuple[Signals, list[Frame]]:
    """:func:`compute_signals`, also handing back the frames whose index is in ``keep`` (for the
    classifiers), so an animation is decoded once and never held in memory whole."""
    digests: dict[HashType, str] = {}
    for bytes_hasher in bytes_hashers:
        digests.update(bytes_hasher.hash_bytes(image.data))
    frame_hashes: list[FrameHash] = []
    variant_hashes: list[FrameHash] = []
    screened = 0
    previous: tuple[str, tuple[int, int], bytes] | None = None
    kept: list[Frame] = []
    for frame in image.frames():
        screened += 1
        if frame.index in keep:
            kept.append(frame)
        fingerprint = (frame.image.mode, frame.image.size, frame.image.tobytes())
        if fingerprint == previous:
            continue
        previous = fingerprint
        for frame_hasher in frame_hashers:
            for frame_hash in frame_hasher.hash_frame(frame):
                (frame_hashes if frame_hash.variant is None else variant_hashes).append(frame_hash)
    signals = Signals(
        digests=digests,
        frame_hashes=tuple(frame_hashes),
        frames_screened=screened,
        variant_hashes=tuple(variant_hashes),
    )
    return signals, kept
