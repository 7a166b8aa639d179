"""The multi-index PDQ index against brute force on real PDQ hashes, at a size where the chunk
tables are used, with near misses planted right at each bank's threshold and near misses built to
be reachable through one chunk only (the generalised pigeonhole's tightest cases)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pytest

from tests.matching.support import (
    BruteForce,
    assert_agrees,
    derived_hashes,
    distance,
    flip_bits,
    flip_bits_in_chunks,
    hits_of,
    real_pdq_hashes,
)
from vigil.matching import mih
from vigil.matching.banks import BankAction, BankInfo, Change
from vigil.matching.index import PdqIndex
from vigil.signals import HashType


def pdq_bank(bank_id: int, name: str, threshold: int, *, enabled: bool = True) -> BankInfo:
    return BankInfo(bank_id, name, HashType.PDQ, BankAction.BLOCK, threshold, enabled)


EXACT = pdq_bank(1, "exact", 0)
STRICT = pdq_bank(2, "strict", 10)
USUAL = pdq_bank(3, "usual", 31)
LOOSE = pdq_bank(4, "loose", 40)
WIDE = pdq_bank(5, "wide", 64)
OFF = pdq_bank(6, "off", 31, enabled=False)
ALL_BANKS = (EXACT, STRICT, USUAL, LOOSE, WIDE, OFF)
PLANTED_DISTANCES = (0, 1, 9, 10, 11, 30, 31, 32, 33, 39, 40, 41, 63, 64, 65)

# The same entries under four sets of limits: the search radius of a segment is the widest
# enabled threshold, so disabled wide banks must leave the tables in use.
CONFIGURATIONS = {
    # radius 10: every chunk's budget is 0 (exact keys only)
    "radius 10": (EXACT, STRICT, replace(USUAL, enabled=False), replace(LOOSE, enabled=False),
                  replace(WIDE, enabled=False), OFF),
    # radius 31: budgets of 2 and 1
    "radius 31": (EXACT, STRICT, USUAL, replace(LOOSE, enabled=False),
                  replace(WIDE, enabled=False), OFF),
    # radius 40: budgets of 3 and 2, the widest the tables take
    "radius 40": (EXACT, STRICT, USUAL, LOOSE, replace(WIDE, enabled=False), OFF),
    # radius 64: beyond the tables' budgets, every hash is compared
    "radius 64": ALL_BANKS,
}  # fmt: skip


def tabled_size() -> int:
    """Enough hashes that a segment gets its chunk tables (whatever ``mih.SMALLEST_TABLED`` is)."""
    return mih.SMALLEST_TABLED + 4096


def one_chunk_near_misses(
    query: str,
    radius: int,
    chunk: int,
    rng: random.Random,
    key_positions: Sequence[int] | None = None,
) -> tuple[str, str]:
    """Two entries around ``query``: one exactly ``radius`` away that only chunk ``chunk`` can
    find, and one ``radius + 1`` away that no chunk may find.

    The first differs from the query by exactly the chunk's budget in that chunk (at
    ``key_positions`` of its key if given) and by one bit more than the budget in every other
    chunk; the second by one bit more than the budget in every chunk. Over-budget bits go into
    the top eight bits of a key, which pick its bucket at any table size, so no other chunk's
    lookup can come upon them."""
    budgets = mih.chunk_budgets(radius).tolist()
    over = [budget + 1 for budget in budgets]
    inside = list(over)
    inside[chunk] = budgets[chunk]
    top = dict.fromkeys(range(mih.CHUNKS), range(8))
    positions = {**top, chunk: range(int(mih.CHUNK_BITS[chunk])) if key_positions is None
                 else key_positions}  # fmt: skip
    found = flip_bits_in_chunks(query, inside, rng, positions)
    missed = flip_bits_in_chunks(query, over, rng, top)
    return found, missed


@dataclass(frozen=True)
class Corpus:
    entries: list[tuple[int, str]]
    queries: list[str]
    planted: dict[str, dict[int, str]]  # query -> distance -> entry planted in USUAL
    index: PdqIndex


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """Real PDQ hashes (pictures and their copies) and hashes a few bits from them, in banks of
    every threshold; the pictures held out become queries, with entries planted around them."""
    rng = random.Random(7001)
    groups = real_pdq_hashes()
    held = [group for number, group in enumerate(groups) if number % 4 == 0]
    kept = [value for number, group in enumerate(groups) if number % 4 for value in group]
    entries = [(rng.choice(ALL_BANKS).id, value) for value in kept]
    entries += [
        (rng.choice(ALL_BANKS).id, value) for value in derived_hashes(kept, tabled_size(), rng)
    ]
    # The same hash in several banks: each bank reports it under its own threshold.
    entries += [(bank.id, value) for value in kept[:40] for bank in ALL_BANKS]
    queries: list[str] = []
    planted: dict[str, dict[int, str]] = {}
    for number, group in enumerate(held):
        original, copies = group[0], list(group[1:])
        queries += copies  # re-encoded, resized, cropped, turned... copies of a picture
        if number % 2:
            entries.append((USUAL.id, original))  # the copies find their original
            continue
        queries.append(original)
        planted[original] = {}
        for gap in PLANTED_DISTANCES:
            for bank in ALL_BANKS:
                value = flip_bits(original, gap, rng)
                entries.append((bank.id, value))
                if bank is USUAL:
                    planted[original][gap] = value
        for bank in (STRICT, USUAL, LOOSE):
            for chunk in range(mih.CHUNKS):
                pair = one_chunk_near_misses(original, bank.threshold, chunk, rng)
                entries += [(bank.id, value) for value in pair]
    queries += [flip_bits(rng.choice(kept), rng.randrange(45), rng) for _ in range(150)]
    entries = list(dict.fromkeys(entries))  # a bank holds a hash once
    rng.shuffle(entries)
    index = PdqIndex.build(ALL_BANKS, entries, generation=1)
    return Corpus(entries, queries, planted, index)


def test_copies_of_real_pictures_cluster_around_their_original() -> None:
    """What makes the corpus more than random bits: a picture's copies share most of its hash
    (and so most of its chunk keys), unrelated pictures do not."""
    groups = real_pdq_hashes()
    close_copies = [distance(group[0], copy) for group in groups for copy in group[1:3]]
    originals = [group[0] for group in groups[:30]]
    unrelated = [distance(a, b) for n, a in enumerate(originals) for b in originals[n + 1 :]]
    assert sum(gap <= 31 for gap in close_copies) > len(close_copies) // 2
    assert np.median(unrelated) > 100


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_index_equals_brute_force_on_real_hashes(corpus: Corpus, configuration: str) -> None:
    banks = CONFIGURATIONS[configuration]
    index = corpus.index.with_banks(banks, generation=2)
    radius = max(bank.threshold for bank in banks if bank.enabled)
    assert len(index.base) == 1
    assert index.base[0] is corpus.index.base[0]
    assert index.base[0].segment.tables is not None
    assert mih.tables_cover(radius) == (radius <= 40)

    compared = assert_agrees(index, banks, corpus.entries, corpus.queries)

    assert compared > len(corpus.queries)


def test_planted_near_misses_stop_exactly_at_the_threshold(corpus: Corpus) -> None:
    banks = CONFIGURATIONS["radius 31"]
    index = corpus.index.with_banks(banks, generation=2)
    assert corpus.planted
    for query, around in corpus.planted.items():
        found = {(entry, gap) for name, entry, gap in hits_of(index, query) if name == USUAL.name}
        inside = {(around[gap], gap) for gap in PLANTED_DISTANCES if gap <= 31}
        outside = {around[gap] for gap in PLANTED_DISTANCES if gap > 31}
        assert inside <= found
        assert not outside & {entry for entry, _ in found}


def test_copies_of_a_real_picture_find_their_original(corpus: Corpus) -> None:
    index = corpus.index.with_banks(CONFIGURATIONS["radius 31"], generation=2)
    groups = [group for number, group in enumerate(real_pdq_hashes()) if number % 4 == 0]
    originals = [group for number, group in enumerate(groups) if number % 2]
    found = 0
    for group in originals:
        for copy in group[1:]:
            hits = {(name, entry) for name, entry, _ in hits_of(index, copy)}
            if distance(copy, group[0]) <= USUAL.threshold:
                assert (USUAL.name, group[0]) in hits
                found += 1
    assert found >= len(originals)


def test_chunk_layout_of_the_adversarial_near_misses() -> None:
    """The near misses are what they claim: ``one_chunk_near_misses`` puts exactly the budget's
    bits in the one chunk, and one more than the budget in every other."""
    rng = random.Random(7002)
    query = real_pdq_hashes()[0][0]
    query_keys = [mih.chunk_keys(mih.vectors_from_hex([query]), c)[0] for c in range(mih.CHUNKS)]
    for radius in (10, 31, 40):
        budgets = mih.chunk_budgets(radius).tolist()
        for chunk in range(mih.CHUNKS):
            found, missed = one_chunk_near_misses(query, radius, chunk, rng)
            assert (distance(query, found), distance(query, missed)) == (radius, radius + 1)
            for value, expected in ((found, budgets[chunk]), (missed, budgets[chunk] + 1)):
                vectors = mih.vectors_from_hex([value])
                gaps = [int(mih.chunk_keys(vectors, c)[0] ^ query_keys[c]).bit_count()
                        for c in range(mih.CHUNKS)]  # fmt: skip
                assert gaps == [*(b + 1 for b in budgets[:chunk]), expected,
                                *(b + 1 for b in budgets[chunk + 1 :])]  # fmt: skip


@pytest.fixture(scope="module")
def background() -> list[str]:
    """Hashes a few bits from real ones, enough for a tabled segment."""
    rng = random.Random(7003)
    values = [value for group in real_pdq_hashes() for value in group]
    return values + derived_hashes(values, tabled_size(), rng)


# Where the in-budget bits of the finding chunk go: into the bucket's bits, into the tail kept
# beside each posting, or below the tail (seen only by the full comparison).
REGIONS = ("bucket", "tail", "below tail")


@pytest.mark.parametrize(
    ("radius", "region"),
    # At radius 10 every budget is 0: the finding chunk has no bits to place.
    [(10, "bucket"), *((radius, region) for radius in (31, 40) for region in REGIONS)],
)
def test_near_miss_reachable_through_one_chunk_only(
    background: list[str], radius: int, region: str
) -> None:
    rng = random.Random(radius * 10 + REGIONS.index(region))
    bank = pdq_bank(1, "b", radius)
    bits = mih.bucket_bits(len(background) + 2 * mih.CHUNKS * 8)
    queries = [flip_bits(value, 48, rng) for value in rng.sample(background, 8 * mih.CHUNKS)]
    planted: list[tuple[str, str, str]] = []
    for number, query in enumerate(queries):
        chunk = number % mih.CHUNKS
        size = int(mih.CHUNK_BITS[chunk])
        positions = {
            "bucket": range(bits),
            "tail": range(bits, bits + mih.TAIL_BITS),
            "below tail": range(bits + mih.TAIL_BITS, size),
        }[region]
        found, missed = one_chunk_near_misses(query, radius, chunk, rng, positions)
        planted.append((query, found, missed))
    entries = [(bank.id, value) for value in background]
    entries += [(bank.id, value) for _, found, missed in planted for value in (found, missed)]
    index = PdqIndex.build([bank], entries, generation=1)
    assert index.base[0].segment.tables is not None
    assert index.base[0].segment.tables.bits == bits

    for query, found, missed in planted:
        hits = {hit.entry: hit.distance for hit in index.search(query)}
        assert hits.get(found) == radius, f"missed {found} at {radius} from {query}"
        assert missed not in hits
    assert_agrees(index, [bank], entries, [query for query, _, _ in planted])


# --- skewed data -----------------------------------------------------------------------------


def variations_within_one_chunk(
    value: str, chunk: int, count: int, rng: random.Random
) -> list[str]:
    """Distinct hashes equal to ``value`` but in chunk ``chunk``: the other ten chunk keys are
    the same for all of them, so ten tables each put them all in one bucket."""
    size = int(mih.CHUNK_BITS[chunk])
    variations: set[str] = set()
    while len(variations) < count:
        flips = [0] * mih.CHUNKS
        flips[chunk] = rng.randint(1, size)
        variations.add(flip_bits_in_chunks(value, flips, rng))
    return sorted(variations)


def test_hashes_sharing_ten_of_eleven_chunk_keys(background: list[str]) -> None:
    rng = random.Random(7004)
    banks = [pdq_bank(1, "usual", 31), pdq_bank(2, "strict", 10)]
    centre = real_pdq_hashes()[3][0]
    crowd = variations_within_one_chunk(centre, 4, mih.SMALLEST_TABLED // 2, rng)
    entries = [(rng.choice(banks).id, value) for value in crowd + background[: len(crowd)]]
    index = PdqIndex.build(banks, entries, generation=1)
    assert index.base[0].segment.tables is not None
    queries = [centre, *rng.sample(crowd, 4)]
    queries += [flip_bits(centre, gap, rng) for gap in (5, 20, 30, 31, 32, 33)]
    queries += [flip_bits_in_chunks(centre, [3] * 10 + [1], rng) for _ in range(3)]

    compared = assert_agrees(index, banks, entries, queries)

    # Thousands of hits for one query: more than a search first makes room for.
    assert compared > 10 * len(queries)
    assert max(len(index.search(query)) for query in queries) > 1000


def test_mostly_zero_hashes(background: list[str]) -> None:
    """Hashes of a few set bits (as flat and featureless pictures give): every chunk key is
    nearly always zero, so one bucket of every table holds nearly everything."""
    rng = random.Random(7005)
    banks = [pdq_bank(1, "usual", 31), pdq_bank(2, "loose", 40), pdq_bank(3, "exact", 0)]
    sparse = {"0" * 64}
    while len(sparse) < mih.SMALLEST_TABLED + 1000:
        sparse.add(flip_bits("0" * 64, rng.choice((1, 2, 3, 3, 4, 5, 6, 40)), rng))
    entries = [(rng.choice(banks).id, value) for value in sorted(sparse)]
    entries += [(banks[0].id, value) for value in background[:2000]]
    index = PdqIndex.build(banks, entries, generation=1)
    assert index.base[0].segment.tables is not None
    queries = ["0" * 64, "f" * 64, *(flip_bits("0" * 64, gap, rng) for gap in (1, 8, 30, 35))]
    queries += rng.sample(background[:2000], 5)

    compared = assert_agrees(index, banks, entries, queries)

    assert compared > mih.SMALLEST_TABLED


@pytest.mark.parametrize("min_bucket_bits", [16, 20])
def test_wide_buckets_with_short_tails(
    background: list[str], monkeypatch: pytest.MonkeyPatch, min_bucket_bits: int
) -> None:
    """A ten-million-hash segment addresses 20 of a chunk's 23-24 bits directly, leaving a tail
    of 3-4 bits beside each posting; the same layout on fewer hashes (a size parameter)."""
    monkeypatch.setattr(mih, "_MIN_BUCKET_BITS", min_bucket_bits)
    rng = random.Random(7006)
    bank = pdq_bank(1, "usual", 31)
    queries = [flip_bits(value, 40, rng) for value in rng.sample(background, 2 * mih.CHUNKS)]
    entries = [(bank.id, value) for value in background]
    for number, query in enumerate(queries):
        chunk = number % mih.CHUNKS
        tail = range(min_bucket_bits, int(mih.CHUNK_BITS[chunk]))
        for positions in (range(min_bucket_bits), tail):
            pair = one_chunk_near_misses(query, 31, chunk, rng, positions)
            entries += [(bank.id, value) for value in pair]
        entries += [(bank.id, flip_bits(query, gap, rng)) for gap in (30, 31, 32)]
    index = PdqIndex.build([bank], entries, generation=1)
    tables = index.base[0].segment.tables
    assert tables is not None
    assert tables.bits == min_bucket_bits

    compared = assert_agrees(index, [bank], entries, queries)

    assert compared >= 4 * len(queries)


# --- several parts ---------------------------------------------------------------------------


def test_index_split_into_several_parts(
    background: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mih.MAX_ROWS`` (rows a segment can address) is read when an index is built: a smaller
    one splits the same hashes into several parts, and searches span them all."""
    part_rows = mih.SMALLEST_TABLED + 1000
    monkeypatch.setattr(mih, "MAX_ROWS", part_rows)
    rng = random.Random(7007)
    banks = [pdq_bank(1, "usual", 31), pdq_bank(2, "strict", 10), pdq_bank(3, "off", 31,
             enabled=False)]  # fmt: skip
    values = background + derived_hashes(background, part_rows, rng)
    entries = [(rng.choice(banks).id, value) for value in values]
    queries = [flip_bits(value, rng.choice((0, 10, 11, 31, 32)), rng)
               for _, value in rng.sample(entries, 200)]  # fmt: skip

    index = PdqIndex.build(banks, entries, generation=1)

    assert [len(part.segment) for part in index.base] == [
        part_rows,
        part_rows,
        len(entries) - 2 * part_rows,
    ]
    assert [part.segment.tables is not None for part in index.base] == [True, True, False]
    assert len(index) == len(entries)
    assert assert_agrees(index, banks, entries, queries) > 100


def test_more_added_entries_than_a_segment_holds(
    background: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import bigger than a segment (2**24 hashes in production: a large list imported
    while the service runs) is added to the index like any other change."""
    monkeypatch.setattr(mih, "MAX_ROWS", 3000)
    rng = random.Random(7008)
    bank = pdq_bank(1, "usual", 31)
    base = [(bank.id, value) for value in background[:2000]]
    added = [(bank.id, value) for value in background[2000:6000]]
    index = PdqIndex.build([bank], base, generation=1)

    updated = index.with_changes(Change(added=added), [bank], generation=2)

    assert len(updated) == len(base) + len(added)
    queries = [flip_bits(value, 31, rng) for _, value in rng.sample(added, 30)]
    assert_agrees(updated, [bank], base + added, queries)


def test_search_results_are_each_entry_once(corpus: Corpus) -> None:
    """An entry near the query in several chunks is looked up through each: it is reported
    once (per bank holding it)."""
    index = corpus.index.with_banks(CONFIGURATIONS["radius 40"], generation=2)
    baseline = BruteForce(corpus.entries)
    query = next(iter(corpus.planted))
    hits = hits_of(index, query)
    assert hits == baseline.search(CONFIGURATIONS["radius 40"], query)
    assert set(hits.values()) == {1}
    assert Counter(name for name, _, _ in hits)[USUAL.name] >= 7
