"""PdqIndex against the brute-force baseline: every entry within threshold, none beyond."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from tests.images import encode, make_photo
from tests.matching.support import (
    assert_index_agrees_with_brute_force,
    distance,
    flip_bits,
    random_hash,
    signals_of,
)
from vigil.matching.banks import BankAction, BankInfo
from vigil.matching.index import PdqIndex, hamming_distance
from vigil.signals import HashType

BANKS = [
    BankInfo(1, "strict", HashType.PDQ, BankAction.BLOCK, 10, True),
    BankInfo(2, "usual", HashType.PDQ, BankAction.BLOCK, 31, True),
    BankInfo(3, "loose", HashType.PDQ, BankAction.HOLD, 60, True),
    BankInfo(4, "allow", HashType.PDQ, BankAction.IGNORE, 0, True),
]


def test_empty_index_finds_nothing() -> None:
    assert PdqIndex.empty().search("0" * 64) == []
    assert PdqIndex.build(BANKS, [], generation=3).search("f" * 64) == []
    assert len(PdqIndex.empty()) == 0


def test_reference_distance_agrees_with_the_index_module() -> None:
    rng = random.Random(1)
    for _ in range(200):
        a, b = random_hash(rng), random_hash(rng)
        assert hamming_distance(a, b) == distance(a, b)


def test_flip_bits_moves_a_hash_exactly_that_far() -> None:
    rng = random.Random(2)
    value = random_hash(rng)
    assert [distance(value, flip_bits(value, n, rng)) for n in (0, 1, 31, 128, 256)] == [
        0,
        1,
        31,
        128,
        256,
    ]


def test_index_agrees_with_brute_force_on_thousands_of_random_hashes() -> None:
    rng = random.Random(3)
    entries = [(rng.choice(BANKS).id, random_hash(rng)) for _ in range(3000)]
    # Random hashes lie ~128 bits apart, so most queries are planted near entries, at every
    # distance from 0 to 70: inside, at and beyond each bank's threshold.
    queries = [flip_bits(rng.choice(entries)[1], rng.randrange(71), rng) for _ in range(300)]
    queries += [random_hash(rng) for _ in range(20)]

    compared = assert_index_agrees_with_brute_force(BANKS, entries, queries)

    assert compared > 100


def test_threshold_is_inclusive_bit_for_bit() -> None:
    rng = random.Random(4)
    bank = BankInfo(7, "b", HashType.PDQ, BankAction.BLOCK, 31, True)
    entry = random_hash(rng)
    index = PdqIndex.build([bank], [(bank.id, entry)], generation=1)

    found = {
        n: [hit.distance for hit in index.search(flip_bits(entry, n, rng))] for n in range(29, 34)
    }

    assert found == {29: [29], 30: [30], 31: [31], 32: [], 33: []}


def test_each_bank_uses_its_own_threshold() -> None:
    rng = random.Random(5)
    entry = random_hash(rng)
    entries = [(bank.id, entry) for bank in BANKS]  # the same hash in every bank
    index = PdqIndex.build(BANKS, entries, generation=1)

    def banks_matching(bits: int) -> list[str]:
        return sorted(hit.bank.name for hit in index.search(flip_bits(entry, bits, rng)))

    assert banks_matching(0) == ["allow", "loose", "strict", "usual"]
    assert banks_matching(10) == ["loose", "strict", "usual"]
    assert banks_matching(11) == ["loose", "usual"]
    assert banks_matching(32) == ["loose"]
    assert banks_matching(61) == []


def test_hits_are_nearest_first_and_report_the_entry_and_its_distance() -> None:
    rng = random.Random(6)
    query = random_hash(rng)
    bank = BankInfo(1, "b", HashType.PDQ, BankAction.BLOCK, 40, True)
    planted = {bits: flip_bits(query, bits, rng) for bits in (25, 3, 40, 17, 0)}
    index = PdqIndex.build([bank], [(bank.id, value) for value in planted.values()], 1)

    hits = index.search(query)

    assert [(hit.distance, hit.entry) for hit in hits] == sorted(
        (bits, value) for bits, value in planted.items()
    )


def test_entries_of_banks_not_listed_are_left_out() -> None:
    rng = random.Random(7)
    value = random_hash(rng)
    listed = BankInfo(1, "listed", HashType.PDQ, BankAction.BLOCK, 31, True)

    index = PdqIndex.build([listed], [(1, value), (99, value)], generation=1)

    assert len(index) == 1
    assert [hit.bank.name for hit in index.search(value)] == ["listed"]


def test_uppercase_query_finds_the_same_entries() -> None:
    rng = random.Random(8)
    value = random_hash(rng)
    index = PdqIndex.build(BANKS[:1], [(1, value)], generation=1)
    assert [hit.entry for hit in index.search(value.upper())] == [value]


def image_hashes() -> list[list[str]]:
    """PDQ hashes of generated pictures, each with copies of it as they travel the internet:
    re-encoded and resized copies stay close; a cropped one lands around the threshold."""
    pictures = []
    for seed in range(6):
        original = make_photo(480, 360, seed=seed)
        jpeg = encode(original, "JPEG", quality=85)
        decoded = Image.open(io.BytesIO(jpeg))
        copies = [
            jpeg,
            encode(decoded, "JPEG", quality=60),
            encode(decoded.resize((240, 180)), "PNG"),
            encode(decoded.crop((10, 8, 470, 352)), "JPEG", quality=90),
        ]
        pictures.append([signals_of(data).frame_hashes[0].value for data in copies])
    return pictures


@pytest.fixture(scope="module")
def picture_hashes() -> list[list[str]]:
    return image_hashes()


def test_index_agrees_with_brute_force_on_hashes_of_real_pictures(
    picture_hashes: list[list[str]],
) -> None:
    rng = random.Random(9)
    hashes = [value for copies in picture_hashes for value in copies]
    entries = [(bank.id, value) for value in hashes for bank in BANKS]
    # The copies themselves, and near-duplicates right around each bank's threshold.
    queries = list(hashes)
    for value in hashes:
        queries += [flip_bits(value, bits, rng) for bits in (9, 10, 11, 30, 31, 32, 59, 60, 61)]

    compared = assert_index_agrees_with_brute_force(BANKS, entries, queries)

    assert compared > len(queries)


def test_reencoded_and_resized_copies_find_their_original_and_no_other_picture(
    picture_hashes: list[list[str]],
) -> None:
    bank = BankInfo(1, "usual", HashType.PDQ, BankAction.BLOCK, 31, True)
    originals = [copies[0] for copies in picture_hashes]
    index = PdqIndex.build([bank], [(bank.id, value) for value in originals], generation=1)

    for original, copies in zip(originals, picture_hashes, strict=True):
        for value in copies[:3]:  # not the cropped copy: PDQ is not made to survive crops
            assert [hit.entry for hit in index.search(value)] == [original]
