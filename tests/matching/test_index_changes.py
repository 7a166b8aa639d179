"""PdqIndex across additions and removals: after every change the index holds exactly the live
entries, whether they sit in the base, in the part added since, or were removed from the base and
added back; compacting changes nothing a search can see."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import pytest

from tests.matching.support import (
    assert_agrees,
    derived_hashes,
    flip_bits,
    hits_of,
    real_pdq_hashes,
)
from vigil.matching import mih
from vigil.matching.banks import BankAction, BankInfo, Change
from vigil.matching.index import PdqIndex
from vigil.signals import HashType

Entry = tuple[int, str]  # (bank id, hash)


def pdq_bank(bank_id: int, threshold: int, *, enabled: bool = True) -> BankInfo:
    return BankInfo(bank_id, f"bank-{bank_id}", HashType.PDQ, BankAction.BLOCK, threshold, enabled)


@pytest.fixture(autouse=True)
def small_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk tables from 512 hashes up (a size parameter): the base, and an added part that
    grows, get tables at sizes these tests build in milliseconds."""
    monkeypatch.setattr(mih, "SMALLEST_TABLED", 512)


@dataclass
class Store:
    """The bank tables as the database keeps them (``store.banks``): live entries tagged with the
    generation that added them, a log of removals, and a generation counter moved by every
    change; ``changes`` answers as ``perceptual_changes`` does."""

    banks: dict[int, BankInfo]
    rows: dict[Entry, int] = field(default_factory=dict)
    removals: list[tuple[int, str, int, int]] = field(default_factory=list)
    generation: int = 1

    def add(self, entry: Entry) -> None:
        self.generation += 1
        self.rows.setdefault(entry, self.generation)

    def remove(self, entry: Entry) -> None:
        self.generation += 1
        added = self.rows.pop(entry)
        self.removals.append((entry[0], entry[1], added, self.generation))

    def set_bank(self, bank: BankInfo) -> None:
        self.generation += 1
        self.banks[bank.id] = bank

    def changes(self, after: int, through: int) -> Change:
        added = sorted(
            (generation, entry)
            for entry, generation in self.rows.items()
            if after < generation <= through
        )
        return Change(
            added=[entry for _, entry in added],
            removed=[
                (bank_id, value, added_generation)
                for bank_id, value, added_generation, generation in self.removals
                if after < generation <= through
            ],
        )

    def live(self) -> list[Entry]:
        return list(self.rows)

    def bank_list(self) -> list[BankInfo]:
        return list(self.banks.values())

    def catch_up(self, index: PdqIndex) -> PdqIndex:
        """What a matcher does on seeing a newer generation."""
        change = self.changes(index.generation, self.generation)
        return index.with_changes(change, self.bank_list(), self.generation)


@pytest.fixture(scope="module")
def hashes() -> list[str]:
    """Real PDQ hashes, and hashes a few bits from them."""
    values = [value for group in real_pdq_hashes() for value in group]
    return list(dict.fromkeys(values + derived_hashes(values, 7000, random.Random(8001))))


def make_store(values: Sequence[str], banks: Sequence[BankInfo], rng: random.Random) -> Store:
    store = Store({bank.id: bank for bank in banks})
    for value in values:
        store.rows[(rng.choice(banks).id, value)] = 1
    return store


def near(value: str, rng: random.Random) -> Iterator[str]:
    """Queries around ``value``: itself, and at the usual threshold's edge."""
    yield value
    for gap in (10, 31, 32):
        yield flip_bits(value, gap, rng)


# --- a long random sequence ------------------------------------------------------------------


THRESHOLDS = (0, 10, 31, 32, 40, 64)


def random_step(
    store: Store,
    base_generation: int,
    pool: list[str],
    rng: random.Random,
    room: int,
    applied: Counter[str],
) -> list[str]:
    """A few random bank changes, adding at most ``room`` hashes (counted in ``applied``);
    returns hashes the step touched (to search around)."""
    touched: list[str] = []
    live = store.live()
    in_base = [entry for entry in live if store.rows[entry] <= base_generation]
    added_since = [entry for entry in live if store.rows[entry] > base_generation]
    gone = [(bank_id, value) for bank_id, value, _, _ in store.removals
            if (bank_id, value) not in store.rows]  # fmt: skip
    for _ in range(rng.randint(1, 4)):
        action = rng.choice(
            ["add", "add", "import", "remove base", "remove added", "remove and re-add", "re-add",
             "same hash another bank", "threshold", "toggle"]
        )  # fmt: skip
        generation = store.generation
        if action in ("add", "import"):
            count = rng.randint(1, 60) if action == "add" else rng.randint(300, 600)
            count = min(count, len(pool), room)
            room -= count
            for value in [pool.pop() for _ in range(count)]:
                store.add((rng.choice(list(store.banks)), value))
                touched.append(value)
        elif action == "remove base" and in_base:
            for entry in rng.sample(in_base, min(len(in_base), rng.randint(1, 30))):
                if entry in store.rows:
                    store.remove(entry)
                    touched.append(entry[1])
        elif action == "remove added" and added_since:
            for entry in rng.sample(added_since, min(len(added_since), rng.randint(1, 10))):
                if entry in store.rows:
                    store.remove(entry)
                    touched.append(entry[1])
        elif action == "remove and re-add" and live and room >= 5:
            room -= 5
            for entry in rng.sample(live, min(len(live), 5)):
                if entry in store.rows:
                    store.remove(entry)
                    store.add(entry)
                    touched.append(entry[1])
        elif action == "re-add" and gone and room >= 5:
            room -= 5
            for entry in rng.sample(gone, min(len(gone), 5)):
                if entry not in store.rows:
                    store.add(entry)
                    touched.append(entry[1])
        elif action == "same hash another bank" and live and room:
            room -= 1
            bank_id, value = rng.choice(live)
            store.add((rng.choice([b for b in store.banks if b != bank_id]), value))
            touched.append(value)
        elif action == "threshold":
            bank = store.banks[rng.choice(list(store.banks))]
            store.set_bank(replace(bank, threshold=rng.choice(THRESHOLDS)))
        elif action == "toggle":
            bank = store.banks[rng.choice(list(store.banks))]
            store.set_bank(replace(bank, enabled=not bank.enabled))
        if store.generation != generation:
            applied[action] += 1
    return touched


def expected_pending(store: Store, base_entries: set[Entry], base_generation: int) -> int:
    """Base rows removed (a base entry removed and added back counts here and as added), and
    entries added since the base was built."""
    newer = {entry for entry, generation in store.rows.items() if generation > base_generation}
    return len(
        {entry for entry in base_entries if entry not in store.rows or entry in newer}
    ) + len(newer)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("part_rows", [None, 2000], ids=["one part", "several parts"])
def test_random_changes_keep_the_index_equal_to_brute_force(
    hashes: list[str], monkeypatch: pytest.MonkeyPatch, seed: int, part_rows: int | None
) -> None:
    if part_rows is not None:
        monkeypatch.setattr(mih, "MAX_ROWS", part_rows)
    rng = random.Random(seed)
    pool = list(hashes)
    rng.shuffle(pool)
    banks = [pdq_bank(1, 31), pdq_bank(2, 10), pdq_bank(3, 40, enabled=False), pdq_bank(4, 0)]
    store = make_store([pool.pop() for _ in range(4500)], banks, rng)
    index = PdqIndex.build(store.bank_list(), store.live(), generation=store.generation)
    tabled = [part.segment.tables is not None for part in index.base]
    assert tabled == ([True] if part_rows is None else [True, True, False])
    fixed_queries = [value for _, value in rng.sample(store.live(), 15)]
    fixed_queries = [query for value in fixed_queries for query in near(value, rng)]
    base_entries = set(store.live())
    tabled_added = 0
    applied: Counter[str] = Counter()

    for step in range(1, 19):
        # The added entries stay within one segment's rows (more is test_mih's
        # test_more_added_entries_than_a_segment_holds).
        room = mih.MAX_ROWS - 1 - sum(len(part.segment) for part in index.added)
        touched = random_step(store, index.base_generation, pool, rng, room, applied)
        previous = index
        index = store.catch_up(index)

        assert index.generation == store.generation
        assert index.base == previous.base
        assert index.base_generation == previous.base_generation
        live = store.live()
        assert len(index) == len(live)
        assert index.pending == expected_pending(store, base_entries, index.base_generation)
        queries = fixed_queries + [q for value in touched[:12] for q in near(value, rng)]
        assert_agrees(index, store.bank_list(), live, queries)
        tabled_added += any(part.segment.tables is not None for part in index.added)

        if step % 9 == 0:
            compacted = index.compacted()
            assert (compacted.pending, len(compacted)) == (0, len(live))
            assert compacted.base_generation == compacted.generation == store.generation
            for query in queries:
                assert hits_of(compacted, query) == hits_of(index, query)
            index, base_entries = compacted, set(live)
    assert tabled_added  # the added part grew big enough for tables of its own
    assert len(applied) >= 7, applied


# --- the cases one by one --------------------------------------------------------------------


@pytest.fixture
def two_banks(hashes: list[str]) -> tuple[Store, PdqIndex]:
    """A store with 1500 hashes in two banks, and an index built at its generation."""
    rng = random.Random(8002)
    store = make_store(hashes[:1500], [pdq_bank(1, 31), pdq_bank(2, 10)], rng)
    index = PdqIndex.build(store.bank_list(), store.live(), generation=store.generation)
    assert index.base[0].segment.tables is not None
    return store, index


def entries_found(index: PdqIndex, value: str) -> set[Entry]:
    return {(hit.bank.id, hit.entry) for hit in index.search(value) if hit.distance == 0}


def test_removed_base_entry_is_gone_and_comes_back_when_added_again(
    two_banks: tuple[Store, PdqIndex],
) -> None:
    store, index = two_banks
    entry = store.live()[10]
    store.remove(entry)
    removed = store.catch_up(index)
    store.add(entry)
    re_added = store.catch_up(removed)

    assert entry not in entries_found(removed, entry[1])
    assert (len(removed), removed.pending) == (len(index) - 1, 1)
    assert entry in entries_found(re_added, entry[1])
    assert (len(re_added), re_added.pending) == (len(index), 2)  # one removed, one added
    assert entry in entries_found(re_added.compacted(), entry[1])


def test_removal_and_addition_of_the_same_hash_in_one_catch_up_keep_it(
    two_banks: tuple[Store, PdqIndex],
) -> None:
    store, index = two_banks
    entry = store.live()[20]
    store.remove(entry)
    store.add(entry)

    updated = store.catch_up(index)

    assert entry in entries_found(updated, entry[1])
    assert len(updated) == len(index)


def test_hash_added_and_removed_between_two_catch_ups_never_appears(
    two_banks: tuple[Store, PdqIndex], hashes: list[str]
) -> None:
    store, index = two_banks
    entry = (1, hashes[-1])
    store.add(entry)
    store.remove(entry)

    updated = store.catch_up(index)

    assert entries_found(updated, entry[1]) == set()
    assert (len(updated), updated.pending) == (len(index), 0)


def test_removing_an_entry_added_since_the_base(
    two_banks: tuple[Store, PdqIndex], hashes: list[str]
) -> None:
    store, index = two_banks
    first, second = (1, hashes[-1]), (2, hashes[-2])
    store.add(first)
    store.add(second)
    added = store.catch_up(index)
    store.remove(first)

    updated = store.catch_up(added)

    assert entries_found(updated, first[1]) == set()
    assert second in entries_found(updated, second[1])
    assert (len(updated), updated.pending) == (len(index) + 1, 1)


def test_removing_a_hash_from_one_bank_leaves_it_in_the_other(
    two_banks: tuple[Store, PdqIndex], hashes: list[str]
) -> None:
    store, _ = two_banks
    shared = hashes[1600]
    added_later = hashes[1601]
    store.add((1, shared))
    store.add((2, shared))
    index = PdqIndex.build(store.bank_list(), store.live(), generation=store.generation)
    store.add((1, added_later))
    store.add((2, added_later))
    index = store.catch_up(index)
    store.remove((1, shared))  # in the base
    store.remove((2, added_later))  # in the added part

    updated = store.catch_up(index)

    assert entries_found(updated, shared) == {(2, shared)}
    assert entries_found(updated, added_later) == {(1, added_later)}


def test_bank_settings_change_the_limits_without_touching_the_base(
    two_banks: tuple[Store, PdqIndex],
) -> None:
    store, index = two_banks
    rng = random.Random(8003)
    _, value = next(entry for entry in store.live() if entry[0] == 2)
    query = flip_bits(value, 20, rng)
    assert (2, value) not in {(hit.bank.id, hit.entry) for hit in index.search(query)}

    store.set_bank(replace(store.banks[2], threshold=20))
    wider = store.catch_up(index)
    store.set_bank(replace(store.banks[2], threshold=20, enabled=False))
    disabled = store.catch_up(wider)

    assert (2, value) in {(hit.bank.id, hit.entry) for hit in wider.search(query)}
    assert (2, value) not in {(hit.bank.id, hit.entry) for hit in disabled.search(query)}
    assert wider.base == index.base == disabled.base
    assert (wider.pending, disabled.pending) == (0, 0)
    assert_agrees(disabled, store.bank_list(), store.live(), [query, value])


def test_with_banks_moves_the_generation_only(two_banks: tuple[Store, PdqIndex]) -> None:
    store, index = two_banks
    banks = [replace(bank, threshold=0) for bank in store.bank_list()]

    updated = index.with_banks(banks, generation=index.generation + 5)

    assert updated.generation == index.generation + 5
    assert updated.base_generation == index.base_generation
    assert updated.base == index.base
    assert len(updated) == len(index)
    value = store.live()[0][1]
    assert [hit.distance for hit in updated.search(flip_bits(value, 1, random.Random(1)))] == []


def test_entries_of_banks_not_listed_are_not_added(
    two_banks: tuple[Store, PdqIndex], hashes: list[str]
) -> None:
    _, index = two_banks
    unknown = (99, hashes[-3])

    updated = index.with_changes(Change(added=[unknown]), list(index.banks), index.generation + 1)

    assert entries_found(updated, unknown[1]) == set()
    assert len(updated) == len(index)


def test_compacted_index_is_a_new_base_with_the_same_results(
    two_banks: tuple[Store, PdqIndex], hashes: list[str]
) -> None:
    store, index = two_banks
    rng = random.Random(8004)
    for entry in rng.sample(store.live(), 100):
        store.remove(entry)
    for value in hashes[2000:2300]:
        store.add((rng.choice([1, 2]), value))
    updated = store.catch_up(index)
    queries = [q for _, value in rng.sample(store.live(), 40) for q in near(value, rng)]

    compacted = updated.compacted()

    assert compacted.base != index.base
    assert (compacted.pending, compacted.added, compacted.removed) == (0, (), frozenset())
    assert len(compacted) == len(updated) == len(store.live())
    assert compacted.generation == compacted.base_generation == updated.generation
    assert compacted.nbytes >= 32 * len(compacted)
    for query in queries:
        assert hits_of(compacted, query) == hits_of(updated, query)
    assert_agrees(compacted, store.bank_list(), store.live(), queries)
