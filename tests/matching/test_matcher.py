"""The Matcher on a real runtime: exact digests, PDQ by distance, and the allow-lists.

"Known illegal" images here are generated stand-ins whose hashes the test puts in a bank.
"""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from PIL import Image

from tests.images import animated_gif, encode, make_photo
from tests.matching.conftest import ACTOR, MakeBank
from tests.matching.support import flip_bits, signals_of
from vigil.config import Settings
from vigil.intake import open_image
from vigil.matching import admin, importer
from vigil.matching.banks import BankAction, Match
from vigil.matching.matcher import Matcher, apply_allow_lists
from vigil.runtime import Runtime
from vigil.signals import FrameHash, HashType, Signals, compute_signals
from vigil.store.database import Database


@pytest.fixture
def known_image() -> bytes:
    """A stand-in for a known image: a generated photo, as the site would receive it."""
    return encode(make_photo(480, 360, seed=100), "JPEG", quality=90)


@pytest.fixture
def unrelated_image() -> bytes:
    return encode(make_photo(480, 360, seed=200), "JPEG", quality=90)


def reencoded(data: bytes) -> bytes:
    return encode(Image.open(io.BytesIO(data)), "JPEG", quality=70)


def pdq_of(data: bytes) -> str:
    return signals_of(data).frame_hashes[0].value


def matched(runtime: Runtime, data: bytes) -> list[tuple[str, HashType, int]]:
    report = runtime.matcher.match(signals_of(data))
    return sorted((m.bank, m.hash_type, m.distance) for m in report.matches)


def digest(hash_type: HashType, data: bytes) -> str:
    return hashlib.new(hash_type.value, data).hexdigest()


@pytest.mark.parametrize("hash_type", [HashType.SHA256, HashType.MD5, HashType.SHA1])
def test_exact_digest_matches_only_the_identical_file(
    runtime: Runtime,
    make_bank: MakeBank,
    known_image: bytes,
    unrelated_image: bytes,
    hash_type: HashType,
) -> None:
    make_bank("known", hash_type, BankAction.BLOCK, [digest(hash_type, known_image)])

    report = runtime.matcher.match(signals_of(known_image))

    assert [(m.bank, m.action, m.hash_type, m.distance, m.frame) for m in report.matches] == [
        ("known", BankAction.BLOCK, hash_type, 0, None)
    ]
    assert report.matches[0].query == report.matches[0].entry == digest(hash_type, known_image)
    # The same picture re-encoded is another file: exact banks cannot see it.
    assert matched(runtime, reencoded(known_image)) == []
    assert matched(runtime, unrelated_image) == []


def test_digest_imported_in_uppercase_still_matches(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    make_bank(
        "upper", HashType.SHA256, BankAction.HOLD, [hashlib.sha256(known_image).hexdigest().upper()]
    )

    assert matched(runtime, known_image) == [("upper", HashType.SHA256, 0)]


def test_a_sha256_value_in_a_pdq_bank_is_not_an_exact_match(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    # Both are 64 hex characters; the bank's hash type decides what the value means.
    make_bank("pdq-bank", HashType.PDQ, BankAction.BLOCK, [hashlib.sha256(known_image).hexdigest()])

    assert matched(runtime, known_image) == []


def test_pdq_bank_matches_copies_within_its_threshold(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes, unrelated_image: bytes
) -> None:
    make_bank("pdq", HashType.PDQ, BankAction.BLOCK, [pdq_of(known_image)])
    copy = reencoded(known_image)

    report = runtime.matcher.match(signals_of(copy))

    assert len(report.matches) == 1
    match = report.matches[0]
    assert (match.bank, match.hash_type, match.frame) == ("pdq", HashType.PDQ, 0)
    assert (match.query, match.entry) == (pdq_of(copy), pdq_of(known_image))
    assert match.distance <= 31
    assert matched(runtime, unrelated_image) == []


def test_pdq_match_stops_at_the_banks_threshold(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    rng = random.Random(1)
    query = pdq_of(known_image)
    make_bank(
        "near",
        HashType.PDQ,
        BankAction.HOLD,
        [flip_bits(query, bits, rng) for bits in (30, 31, 32)],
        threshold=31,
    )

    report = runtime.matcher.match(signals_of(known_image))

    assert [m.distance for m in report.matches] == [30, 31]


def test_disabled_bank_does_not_match_until_enabled(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    make_bank("off-pdq", HashType.PDQ, BankAction.BLOCK, [pdq_of(known_image)], enabled=False)
    make_bank(
        "off-sha",
        HashType.SHA256,
        BankAction.BLOCK,
        [hashlib.sha256(known_image).hexdigest()],
        enabled=False,
    )
    assert matched(runtime, known_image) == []

    admin.update_bank(runtime.database, "off-pdq", enabled=True, actor=ACTOR)
    admin.update_bank(runtime.database, "off-sha", enabled=True, actor=ACTOR)

    assert matched(runtime, known_image) == [
        ("off-pdq", HashType.PDQ, 0),
        ("off-sha", HashType.SHA256, 0),
    ]


def test_pdq_hashes_below_the_quality_floor_are_not_searched(
    runtime: Runtime, make_bank: MakeBank
) -> None:
    flat = encode(Image.new("RGB", (200, 200), (90, 90, 90)), "PNG")
    flat_hash = signals_of(flat).frame_hashes[0]
    assert flat_hash.quality < runtime.settings.matching.pdq_quality_floor
    make_bank("flat", HashType.PDQ, BankAction.BLOCK, [flat_hash.value])

    # Even the identical featureless image: such hashes would match unrelated flat pictures.
    assert matched(runtime, flat) == []


def test_quality_floor_is_inclusive(runtime: Runtime, make_bank: MakeBank) -> None:
    value = "5a" * 32
    make_bank("b", HashType.PDQ, BankAction.BLOCK, [value])
    floor = runtime.settings.matching.pdq_quality_floor

    def matches_at(quality: int) -> int:
        signals = Signals({}, (FrameHash(HashType.PDQ, value, quality, 0),), 1)
        return len(runtime.matcher.match(signals).matches)

    assert (matches_at(floor - 1), matches_at(floor), matches_at(100)) == (0, 1, 1)


def test_every_frame_is_matched_and_reported_with_its_index(
    runtime: Runtime, make_bank: MakeBank
) -> None:
    frames = [make_photo(128, 128, seed=seed) for seed in (1, 2, 3)]
    data = animated_gif(frames)
    frame_hashes = signals_of(data).frame_hashes
    make_bank("third-frame", HashType.PDQ, BankAction.BLOCK, [frame_hashes[2].value])

    report = runtime.matcher.match(signals_of(data))

    assert [(m.bank, m.frame, m.distance) for m in report.matches] == [("third-frame", 2, 0)]


def test_index_picks_up_changes_made_through_another_database_object(
    runtime: Runtime, make_bank: MakeBank, settings: Settings, known_image: bytes
) -> None:
    """Another process (a CLI import, another worker) changes banks: no restart needed."""
    make_bank("shared", HashType.PDQ, BankAction.BLOCK)
    assert matched(runtime, known_image) == []
    built = runtime.matcher.index
    other = Database(settings.resolved_database_url)
    try:
        importer.import_values(other, "shared", [pdq_of(known_image)], actor="other process")
        assert matched(runtime, known_image) == [("shared", HashType.PDQ, 0)]
        assert runtime.matcher.index.generation > built.generation

        admin.update_bank(other, "shared", enabled=False, actor="other process")
        assert matched(runtime, known_image) == []

        admin.update_bank(other, "shared", enabled=True, actor="other process")
        admin.remove_hash(other, "shared", pdq_of(known_image), actor="other process")
        assert matched(runtime, known_image) == []
    finally:
        other.dispose()


def test_threshold_change_takes_effect_at_the_next_match(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    rng = random.Random(2)
    make_bank("t", HashType.PDQ, BankAction.BLOCK, [flip_bits(pdq_of(known_image), 20, rng)])
    assert [m.distance for m in runtime.matcher.match(signals_of(known_image)).matches] == [20]

    admin.update_bank(runtime.database, "t", threshold=19, actor=ACTOR)

    assert matched(runtime, known_image) == []


def test_unchanged_banks_keep_the_same_index(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    make_bank("steady", HashType.PDQ, BankAction.BLOCK, [pdq_of(known_image)])
    first = runtime.matcher.refresh()

    runtime.matcher.match(signals_of(known_image))

    assert runtime.matcher.index is first


def test_a_new_matcher_sees_existing_banks(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    make_bank("persisted", HashType.PDQ, BankAction.BLOCK, [pdq_of(known_image)])

    fresh = Matcher(runtime.database, runtime.settings.matching)

    assert [m.bank for m in fresh.match(signals_of(known_image)).matches] == ["persisted"]


# --- allow-lists -----------------------------------------------------------------------------


def test_ignore_bank_suppresses_a_block_match_of_the_same_hash(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    value = pdq_of(known_image)
    make_bank("block", HashType.PDQ, BankAction.BLOCK, [value])
    make_bank("hold", HashType.PDQ, BankAction.HOLD, [value])
    make_bank("false-positives", HashType.PDQ, BankAction.IGNORE, [value], threshold=0)

    report = runtime.matcher.match(signals_of(known_image))

    assert report.matches == ()
    assert sorted((m.bank, allowed.bank) for m, allowed in report.suppressed) == [
        ("block", "false-positives"),
        ("hold", "false-positives"),
    ]


def test_ignore_bank_does_not_excuse_another_frame(runtime: Runtime, make_bank: MakeBank) -> None:
    frames = [make_photo(128, 128, seed=seed) for seed in (4, 5)]
    data = animated_gif(frames)
    first, second = (h.value for h in signals_of(data).frame_hashes)
    make_bank("block", HashType.PDQ, BankAction.BLOCK, [first, second])
    make_bank("allow-first", HashType.PDQ, BankAction.IGNORE, [first], threshold=0)

    report = runtime.matcher.match(signals_of(data))

    assert [(m.bank, m.frame) for m in report.matches] == [("block", 1)]
    assert [(m.frame, allowed.bank) for m, allowed in report.suppressed] == [(0, "allow-first")]


def test_md5_allow_list_does_not_excuse_sha256_or_pdq_matches(
    runtime: Runtime, make_bank: MakeBank, known_image: bytes
) -> None:
    make_bank("md5-block", HashType.MD5, BankAction.BLOCK, [hashlib.md5(known_image).hexdigest()])
    make_bank("sha", HashType.SHA256, BankAction.BLOCK, [hashlib.sha256(known_image).hexdigest()])
    make_bank("pdq", HashType.PDQ, BankAction.HOLD, [pdq_of(known_image)])
    make_bank("md5-allow", HashType.MD5, BankAction.IGNORE, [hashlib.md5(known_image).hexdigest()])

    report = runtime.matcher.match(signals_of(known_image))

    # MD5 collisions can be made: an allow-listed MD5 excuses only the MD5 match.
    assert sorted(m.bank for m in report.matches) == ["pdq", "sha"]
    assert [(m.bank, allowed.bank) for m, allowed in report.suppressed] == [
        ("md5-block", "md5-allow")
    ]


def match(
    bank: str, action: BankAction, hash_type: HashType, query: str, frame: int | None
) -> Match:
    return Match(bank, action, hash_type, query, query, 0, frame)


def test_apply_allow_lists_matches_allow_and_block_per_hash_type_and_value() -> None:
    pdq_a, pdq_b, md5 = "a" * 64, "b" * 64, "c" * 32
    found = [
        match("block", BankAction.BLOCK, HashType.PDQ, pdq_a, 0),
        match("hold", BankAction.HOLD, HashType.PDQ, pdq_b, 1),
        match("block-md5", BankAction.BLOCK, HashType.MD5, md5, None),
        match("allow", BankAction.IGNORE, HashType.PDQ, pdq_a, 0),
        # Same hex as a PDQ value but another type: allows nothing of type PDQ.
        match("allow-sha", BankAction.IGNORE, HashType.SHA256, pdq_b, None),
    ]

    report = apply_allow_lists(found)

    assert [m.bank for m in report.matches] == ["hold", "block-md5"]
    assert [(m.bank, allowed.bank) for m, allowed in report.suppressed] == [("block", "allow")]


def test_ignore_matches_alone_leave_nothing_standing() -> None:
    report = apply_allow_lists([match("allow", BankAction.IGNORE, HashType.PDQ, "a" * 64, 0)])
    assert (report.matches, report.suppressed) == ((), ())


def test_allow_listed_picture_is_not_blocked_through_its_mirror_image(
    runtime: Runtime, make_bank: MakeBank
) -> None:
    """A site allow-lists a harmless picture whose mirror image is in a block bank: screening
    the picture searches its mirror image too, and that match is excused with the picture."""
    data = encode(make_photo(320, 240, seed=31), "JPEG", quality=90)
    screener = runtime.screener
    image = open_image(data, runtime.settings.intake)
    signals = compute_signals(image, screener.bytes_hashers, screener.frame_hashers)
    (own,) = signals.frame_hashes
    mirrored = next(h for h in signals.variant_hashes if h.variant == "flip_h")
    make_bank("block", HashType.PDQ, BankAction.BLOCK, [mirrored.value], threshold=0)

    before = runtime.matcher.match(signals)
    make_bank("harmless", HashType.PDQ, BankAction.IGNORE, [own.value], threshold=0)
    after = runtime.matcher.match(signals)

    assert [(m.bank, m.variant) for m in before.matches] == [("block", "flip_h")]
    assert after.matches == ()
    assert [(m.variant, allowed.bank) for m, allowed in after.suppressed] == [
        ("flip_h", "harmless")
    ]
