"""The PDQ index's saved form: plain ``.npy`` arrays and a JSON manifest that load (memory-mapped
or read) into an index answering exactly as the one saved; damaged or foreign bases are refused,
never misread."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.matching.support import (
    assert_agrees,
    derived_hashes,
    flip_bits,
    hits_of,
    real_pdq_hashes,
)
from vigil.matching import mih, saved
from vigil.matching.banks import BankAction, BankInfo, Change
from vigil.matching.index import PdqIndex
from vigil.matching.saved import IndexFolder, SavedBase
from vigil.signals import HashType

BANKS = [
    BankInfo(1, "usual", HashType.PDQ, BankAction.BLOCK, 31, True),
    BankInfo(2, "strict", HashType.PDQ, BankAction.HOLD, 10, True),
    BankInfo(3, "off", HashType.PDQ, BankAction.BLOCK, 31, False),
]
ARRAYS = ("vectors", "slots", "tails0", "offsets", "postings")


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments of at most 3000 hashes, tabled from 1024 (size parameters): a few thousand
    hashes make a base of several parts, tabled and not, as ten million do."""
    monkeypatch.setattr(mih, "MAX_ROWS", 3000)
    monkeypatch.setattr(mih, "SMALLEST_TABLED", 1024)


@pytest.fixture(scope="module")
def entries() -> list[tuple[int, str]]:
    rng = random.Random(9001)
    values = [value for group in real_pdq_hashes() for value in group]
    values = list(dict.fromkeys(values + derived_hashes(values, 5000, rng)))
    return [(rng.choice(BANKS).id, value) for value in values[:6600]]


@pytest.fixture
def index(entries: list[tuple[int, str]]) -> PdqIndex:
    built = PdqIndex.build(BANKS, entries, generation=7)
    # 3000 + 3000 tabled, 600 compared one by one
    assert [part.segment.tables is not None for part in built.base] == [True, True, False]
    return built


@pytest.fixture
def queries(entries: list[tuple[int, str]]) -> list[str]:
    rng = random.Random(9002)
    return [flip_bits(value, rng.choice((0, 5, 10, 11, 31, 32)), rng)
            for _, value in rng.sample(entries, 150)]  # fmt: skip


DATABASE = "a-database-identity"


def saved_base(folder: IndexFolder, index: PdqIndex) -> SavedBase:
    folder.save(index, DATABASE)
    found = folder.newest(at_most=index.base_generation)
    assert found is not None
    return found


@pytest.mark.parametrize("memory_map", [True, False], ids=["memory-mapped", "read"])
def test_loaded_base_answers_as_the_index_saved(
    tmp_path: Path,
    index: PdqIndex,
    entries: list[tuple[int, str]],
    queries: list[str],
    memory_map: bool,
) -> None:
    folder = IndexFolder(tmp_path / "pdq-index", memory_map=memory_map)
    base = saved_base(folder, index)

    loaded = folder.load(base, BANKS)

    assert (loaded.generation, loaded.base_generation) == (7, 7)
    assert (len(loaded), loaded.pending, loaded.nbytes) == (len(index), 0, index.nbytes)
    for part in loaded.base:
        assert isinstance(part.segment.vectors, np.memmap) == memory_map
    for query in queries:
        assert hits_of(loaded, query) == hits_of(index, query)
    assert assert_agrees(loaded, BANKS, entries, queries) > len(queries)


def test_loaded_arrays_are_the_saved_ones(tmp_path: Path, index: PdqIndex) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")
    loaded = folder.load(saved_base(folder, index), BANKS)

    for original, copy in zip(index.base, loaded.base, strict=True):
        assert copy.slot_banks == original.slot_banks
        assert np.array_equal(copy.segment.vectors, original.segment.vectors)
        assert np.array_equal(copy.segment.slots, original.segment.slots)
        if original.segment.tables is None:
            assert copy.segment.tables is None
            continue
        assert copy.segment.tables is not None
        assert copy.segment.tables.bits == original.segment.tables.bits
        for name in ("tails0", "offsets", "postings"):
            assert np.array_equal(
                getattr(copy.segment.tables, name), getattr(original.segment.tables, name)
            )


def test_saved_base_holds_only_plain_arrays_and_json(tmp_path: Path, index: PdqIndex) -> None:
    """No pickle: every file reads with pickling refused, none holds Python objects."""
    folder = IndexFolder(tmp_path / "pdq-index")
    base = saved_base(folder, index)

    names = sorted(path.name for path in base.folder.iterdir())

    assert names == sorted(
        [saved.MANIFEST]
        + [f"part{n}-{array}.npy" for n in (0, 1) for array in ARRAYS]
        + ["part2-vectors.npy", "part2-slots.npy"]
    )
    for path in base.folder.glob("*.npy"):
        array = np.load(path, allow_pickle=False)
        assert array.dtype != np.dtype(object)
    manifest = json.loads((base.folder / saved.MANIFEST).read_text())
    assert (manifest["generation"], manifest["entries"]) == (7, len(index))


@pytest.mark.parametrize("memory_map", [True, False], ids=["memory-mapped", "read"])
def test_loaded_base_takes_changes_and_compacts(
    tmp_path: Path, index: PdqIndex, entries: list[tuple[int, str]], memory_map: bool
) -> None:
    """A memory-mapped base is read-only: removals, additions and compaction leave it be."""
    rng = random.Random(9003)
    folder = IndexFolder(tmp_path / "pdq-index", memory_map=memory_map)
    loaded = folder.load(saved_base(folder, index), BANKS)
    removed = rng.sample(entries, 300)
    added = [(1, flip_bits(value, 3, rng)) for _, value in rng.sample(entries, 200)]
    change = Change(added=added, removed=[(bank, value, 7) for bank, value in removed])

    updated = loaded.with_changes(change, BANKS, generation=9)
    compacted = updated.compacted()

    live = sorted(set(entries) - set(removed)) + added
    queries = [value for _, value in removed[:40] + added[:40]]
    queries += [flip_bits(value, 31, rng) for value in queries[:40]]
    assert len(updated) == len(compacted) == len(live)
    assert_agrees(updated, BANKS, live, queries)
    assert_agrees(compacted, BANKS, live, queries)


# --- damaged bases ---------------------------------------------------------------------------


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:16] = b"not an npy file!"
    path.write_bytes(bytes(data))


def wrong_type(path: Path) -> None:
    array = np.load(path, allow_pickle=False)
    np.save(path, array.astype(np.float64), allow_pickle=False)


def too_short(path: Path) -> None:
    array = np.load(path, allow_pickle=False)
    np.save(path, array[: len(array) // 2], allow_pickle=False)


def missing(path: Path) -> None:
    path.unlink()


DAMAGE = {"truncated": truncate, "header": garble_header, "dtype": wrong_type,
          "rows": too_short, "missing": missing}  # fmt: skip


@pytest.mark.parametrize("array", ARRAYS)
@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("memory_map", [True, False], ids=["memory-mapped", "read"])
def test_damaged_array_is_refused(
    tmp_path: Path, index: PdqIndex, array: str, damage: str, memory_map: bool
) -> None:
    folder = IndexFolder(tmp_path / "pdq-index", memory_map=memory_map)
    base = saved_base(folder, index)
    DAMAGE[damage](base.folder / f"part1-{array}.npy")

    with pytest.raises(mih.SegmentFormatError):
        folder.load(base, BANKS)


def test_offsets_that_do_not_add_up_are_refused(tmp_path: Path, index: PdqIndex) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")
    base = saved_base(folder, index)
    path = base.folder / "part0-offsets.npy"
    offsets = np.load(path, allow_pickle=False).copy()
    offsets[3, -1] -= 1
    np.save(path, offsets, allow_pickle=False)

    with pytest.raises(mih.SegmentFormatError):
        folder.load(base, BANKS)


def test_offsets_out_of_order_are_refused(tmp_path: Path, index: PdqIndex) -> None:
    """A damaged table inside an intact file (a flipped bit on disk): searches would read
    the wrong rows, or past the arrays; loading refuses it instead."""
    folder = IndexFolder(tmp_path / "pdq-index")
    base = saved_base(folder, index)
    path = base.folder / "part0-offsets.npy"
    offsets = np.load(path, allow_pickle=False).copy()
    offsets[2, 1 : len(offsets[2]) // 2] = 0  # every count still adds up to the rows
    np.save(path, offsets, allow_pickle=False)

    with pytest.raises(mih.SegmentFormatError):
        folder.load(base, BANKS)


def edit_manifest(base: SavedBase, **changes: object) -> None:
    path = base.folder / saved.MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_manifest_whose_row_count_differs_is_refused(tmp_path: Path, index: PdqIndex) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")
    edit_manifest(saved_base(folder, index), entries=len(index) + 1)
    base = folder.newest(at_most=7)
    assert base is not None

    with pytest.raises(mih.SegmentFormatError):
        folder.load(base, BANKS)


@pytest.mark.parametrize(
    "part",
    [
        {"name": "../../outside", "rows": 3000, "tabled": True, "slot_banks": [1, 2, 3]},
        {"name": "part0", "rows": 3000, "tabled": True, "slot_banks": [1]},  # slots name no bank
        {"name": "part0", "rows": 3000, "tabled": "yes", "slot_banks": [1, 2, 3]},
        {"name": "part0", "rows": 3000, "tabled": True, "slot_banks": ["1", "2", "3"]},
        "part0",
    ],
    ids=["path", "slot banks", "tabled", "bank ids", "not an object"],
)
def test_malformed_manifest_part_is_refused(tmp_path: Path, index: PdqIndex, part: object) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")
    base = saved_base(folder, index)
    parts = json.loads((base.folder / saved.MANIFEST).read_text())["parts"]
    parts[0] = part
    edit_manifest(base, parts=parts)
    damaged = folder.newest(at_most=7)
    assert damaged is not None

    with pytest.raises(mih.SegmentFormatError):
        folder.load(damaged, BANKS)


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda text: text[: len(text) // 2],
        lambda text: "[1, 2, 3]",
        lambda text: text.replace(saved.FORMAT, "vigil-pdq-index/0"),
        lambda text: text.replace('"tail_bits": 8', '"tail_bits": 6'),
        lambda text: text.replace("97k mod 256", "k"),
        lambda text: text.replace('"generation": 7', '"generation": "seven"'),
    ],
    ids=["truncated", "not an object", "format", "tail bits", "bit order", "generation"],
)
def test_unreadable_or_foreign_manifest_is_passed_over(
    tmp_path: Path, index: PdqIndex, rewrite: Callable[[str], str]
) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")
    older = PdqIndex.build(BANKS, [], generation=3)
    folder.save(older, DATABASE)
    base = saved_base(folder, index)
    path = base.folder / saved.MANIFEST
    path.write_text(rewrite(path.read_text()))

    found = folder.newest(at_most=100)

    assert found is not None
    assert found.generation == 3  # the older, intact base


def test_newest_base_at_or_before_a_generation(
    tmp_path: Path, entries: list[tuple[int, str]]
) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")
    for generation in (4, 9):
        folder.save(PdqIndex.build(BANKS, entries[: generation * 10], generation), DATABASE)

    def newest(at_most: int) -> tuple[int, int] | None:
        found = folder.newest(at_most=at_most)
        return None if found is None else (found.generation, found.entries)

    assert [newest(g) for g in (3, 4, 8, 9, 50)] == [None, (4, 40), (4, 40), (9, 90), (9, 90)]
    assert IndexFolder(tmp_path / "nowhere").newest(at_most=100) is None


def test_saving_keeps_only_the_newest_bases(tmp_path: Path, entries: list[tuple[int, str]]) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")
    root = folder.root
    old_leftover = root / ".g000000000001-dead.tmp"
    new_leftover = root / ".g000000000002-busy.tmp"
    for leftover in (old_leftover, new_leftover):
        leftover.mkdir(parents=True)
    an_hour_ago = time.time() - 3700
    os.utime(old_leftover, (an_hour_ago, an_hour_ago))

    for generation in range(1, saved.KEEP + 3):
        folder.save(PdqIndex.build(BANKS, entries[:generation], generation), DATABASE)

    kept = sorted(
        json.loads((path / saved.MANIFEST).read_text())["generation"]
        for path in root.iterdir()
        if path.is_dir() and not path.name.startswith(".")
    )
    assert kept == list(range(3, saved.KEEP + 3))
    assert not old_leftover.exists()  # left by a process that died while saving
    assert new_leftover.exists()  # perhaps still being written


def test_only_a_compacted_index_is_saved(tmp_path: Path, index: PdqIndex) -> None:
    changed = index.with_changes(Change(added=[(1, "ab" * 32)]), BANKS, generation=8)
    folder = IndexFolder(tmp_path / "pdq-index")

    with pytest.raises(ValueError, match="compacted"):
        folder.save(changed, DATABASE)

    assert folder.newest(at_most=100) is None


def test_empty_index_saves_and_loads(tmp_path: Path) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")

    loaded = folder.load(saved_base(folder, PdqIndex.build(BANKS, [], generation=2)), BANKS)

    assert (len(loaded), loaded.generation, loaded.search("0" * 64)) == (0, 2, [])


def test_one_process_at_a_time_holds_the_lock(tmp_path: Path) -> None:
    folder = IndexFolder(tmp_path / "pdq-index")
    other = IndexFolder(tmp_path / "pdq-index")  # as another process opens it
    acquired = threading.Event()

    def wait_for_lock() -> None:
        with other.lock():
            acquired.set()

    with folder.lock():
        waiter = threading.Thread(target=wait_for_lock)
        waiter.start()
        assert not acquired.wait(0.3)
    waiter.join(10)
    assert acquired.is_set()
