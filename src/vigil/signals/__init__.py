"""Signals: what can be said about an image. Hashers today; classifiers plug in beside them."""

from __future__ import annotations

from collections.abc import Container, Sequence

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

__all__ = [
    "BytesHasher",
    "FileDigester",
    "FrameHash",
    "FrameHasher",
    "HashType",
    "PdqHasher",
    "Signals",
    "compute_signals",
    "default_hashers",
    "hash_image",
    "normalize_hash",
]


def default_hashers() -> tuple[list[BytesHasher], list[FrameHasher]]:
    return [FileDigester()], [PdqHasher()]


def compute_signals(
    image: DecodedImage,
    bytes_hashers: Sequence[BytesHasher],
    frame_hashers: Sequence[FrameHasher],
) -> Signals:
    """Run every hasher over the image: byte hashers once, frame hashers on each distinct frame.

    Frames identical to the one before (common in animations) are counted as screened but not
    hashed again: their hashes would be the same.
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
            frame_hashes.extend(frame_hasher.hash_frame(frame))
    signals = Signals(digests=digests, frame_hashes=tuple(frame_hashes), frames_screened=screened)
    return signals, kept
