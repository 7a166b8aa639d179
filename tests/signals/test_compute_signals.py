"""compute_signals: digests of the bytes, a perceptual hash of every frame worth hashing."""

from __future__ import annotations

import hashlib

import pytest

from tests.images import animated_gif, encode, gif_with_every_frame, make_photo
from vigil.config import IntakeSettings
from vigil.intake import open_image
from vigil.signals import FrameHash, HashType, Signals, compute_signals, default_hashers
from vigil.signals.digests import FileDigester
from vigil.signals.pdq import pdq_hash


def signals_of(data: bytes, limits: IntakeSettings | None = None) -> Signals:
    return compute_signals(open_image(data, limits or IntakeSettings()), *default_hashers())


@pytest.mark.parametrize(
    "data",
    [
        encode(make_photo(200, 150, seed=1), "PNG"),
        encode(make_photo(200, 150, seed=1), "JPEG", quality=80),
        animated_gif([make_photo(64, 64, seed=s) for s in range(3)]),
    ],
    ids=["png", "jpeg", "gif"],
)
def test_digests_are_hashlibs_of_the_bytes_as_uploaded(data: bytes) -> None:
    signals = signals_of(data)

    assert dict(signals.digests) == {
        HashType.SHA256: hashlib.sha256(data).hexdigest(),
        HashType.MD5: hashlib.md5(data).hexdigest(),
        HashType.SHA1: hashlib.sha1(data).hexdigest(),
    }


def test_digests_have_the_length_of_their_hash_type() -> None:
    digests = FileDigester().hash_bytes(b"any bytes at all")
    assert {kind: len(value) for kind, value in digests.items()} == {
        kind: kind.hex_length for kind in (HashType.SHA256, HashType.MD5, HashType.SHA1)
    }


def test_one_changed_byte_changes_every_digest() -> None:
    data = encode(make_photo(100, 100, seed=2), "PNG")
    changed = data[:-1] + bytes([data[-1] ^ 1])

    before, after = FileDigester().hash_bytes(data), FileDigester().hash_bytes(changed)

    assert all(before[kind] != after[kind] for kind in before)


def test_every_distinct_animation_frame_is_hashed_with_its_index() -> None:
    frames = [make_photo(96, 96, seed=seed) for seed in (10, 11, 12, 13)]

    signals = signals_of(animated_gif(frames))

    assert signals.frames_screened == 4
    assert [h.frame for h in signals.frame_hashes] == [0, 1, 2, 3]
    assert len({h.value for h in signals.frame_hashes}) == 4
    assert all(h.hash_type is HashType.PDQ for h in signals.frame_hashes)


def test_consecutive_identical_frames_are_hashed_once_but_counted_as_screened() -> None:
    first, second = make_photo(96, 96, seed=20), make_photo(96, 96, seed=21)
    data = gif_with_every_frame([first, first, second, second, second, first])

    signals = signals_of(data)

    assert signals.frames_screened == 6
    # A repeat is skipped only right after itself: frame 5 comes back after another frame.
    assert [h.frame for h in signals.frame_hashes] == [0, 2, 5]
    hashes = [h.value for h in signals.frame_hashes]
    assert hashes[0] == hashes[2] != hashes[1]


def test_frame_hashes_are_the_pdq_of_the_frame_as_displayed() -> None:
    frames = [make_photo(96, 96, seed=seed) for seed in (30, 31)]
    data = gif_with_every_frame(frames)

    signals = signals_of(data)

    decoded = [frame.image for frame in open_image(data, IntakeSettings()).frames()]
    assert [(h.value, h.quality) for h in signals.frame_hashes] == [
        pdq_hash(image) for image in decoded
    ]


def test_frames_beyond_the_frame_limit_are_neither_hashed_nor_counted() -> None:
    frames = [make_photo(64, 64, seed=seed) for seed in range(5)]

    signals = signals_of(animated_gif(frames), IntakeSettings(max_frames=3))

    assert signals.frames_screened == 3
    assert [h.frame for h in signals.frame_hashes] == [0, 1, 2]


def test_without_frame_hashers_only_digests_are_computed() -> None:
    image = open_image(encode(make_photo(64, 64, seed=3), "PNG"), IntakeSettings())

    signals = compute_signals(image, [FileDigester()], [])

    assert signals.frame_hashes == ()
    assert signals.frames_screened == 1
    assert set(signals.digests) == {HashType.SHA256, HashType.MD5, HashType.SHA1}


def test_hashes_record_reports_every_hash_and_backgrounds_only_where_they_apply() -> None:
    signals = Signals(
        digests={HashType.SHA256: "a" * 64, HashType.MD5: "b" * 32},
        frame_hashes=(
            FrameHash(HashType.PDQ, "c" * 64, 90, 0),
            FrameHash(HashType.PDQ, "d" * 64, 80, 1, background="black"),
        ),
        frames_screened=2,
    )

    assert signals.hashes_record() == {
        "sha256": "a" * 64,
        "md5": "b" * 32,
        "pdq": [
            {"frame": 0, "hash": "c" * 64, "quality": 90},
            {"frame": 1, "hash": "d" * 64, "quality": 80, "background": "black"},
        ],
    }
