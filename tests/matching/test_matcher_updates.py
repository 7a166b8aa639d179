"""The Matcher's PDQ index on a real runtime as banks change: it follows additions, removals and
bank settings without rebuilding its base, folds them into a new base in the background, opens
the saved base on start-up and catches up, and never trusts a base built from another database.
Throughout, its answers equal brute force over what the database holds."""

from __future__ import annotations

import random
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from tests.matching.conftest import ACTOR, bank_with
from tests.matching.support import (
    BruteForce,
    derived_hashes,
    flip_bits,
    hits_of,
    random_hash,
    real_pdq_hashes,
)
from vigil.config import Settings, load_settings
from vigil.matching import admin, importer, mih
from vigil.matching.banks import BankAction, BankInfo
from vigil.matching.index import PdqIndex
from vigil.matching.matcher import Matcher
from vigil.runtime import Runtime
from vigil.signals import FrameHash, HashType, Signals
from vigil.store import banks as bank_store
from vigil.store.database import Database
from vigil.store.models import Bank, BankHash

MakeRuntime = Callable[[Settings], Runtime]
FilledRuntime = Callable[..., Runtime]


@pytest.fixture(autouse=True)
def small_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk tables from 1024 hashes up (a size parameter): the bases here are tabled, as a
    real list's are, while staying quick to import."""
    monkeypatch.setattr(mih, "SMALLEST_TABLED", 1024)


@pytest.fixture(scope="module")
def hashes() -> list[str]:
    values = [value for group in real_pdq_hashes() for value in group]
    return list(dict.fromkeys(values + derived_hashes(values, 2500, random.Random(9101))))


@pytest.fixture
def filled_runtime(tmp_path: Path, make_runtime: MakeRuntime) -> FilledRuntime:
    """``filled_runtime(values, database="vigil.db", **matching)``: a runtime on the test's
    data folder and that database (a file name in the test's folder, or a URL), with
    ``matching`` settings, whose three PDQ banks (one disabled) hold ``values`` between them."""

    def build(values: Sequence[str], database: str = "vigil.db", **matching: Any) -> Runtime:
        url = database if "://" in database else f"sqlite:///{tmp_path / database}"
        settings = load_settings(data_dir=tmp_path / "data", database_url=url, matching=matching)
        runtime = make_runtime(settings)
        bank_with(runtime, "usual", HashType.PDQ, BankAction.BLOCK, values[0::3], threshold=31)
        bank_with(runtime, "strict", HashType.PDQ, BankAction.HOLD, values[1::3], threshold=10)
        bank_with(runtime, "off", HashType.PDQ, BankAction.BLOCK, values[2::3], enabled=False)
        return runtime

    return build


def database_contents(database: Database) -> tuple[list[BankInfo], list[tuple[int, str]]]:
    """The PDQ banks and their entries, read straight from the tables."""
    with database.session() as session:
        banks = [
            bank_store.to_info(bank)
            for bank in session.scalars(select(Bank).where(Bank.hash_type == "pdq"))
        ]
        ids = {bank.id for bank in banks}
        rows = session.execute(select(BankHash.bank_id, BankHash.value)).all()
    return banks, [(bank_id, value) for bank_id, value in rows if bank_id in ids]


def assert_matches_database(runtime: Runtime, queries: Sequence[str]) -> PdqIndex:
    """The matcher, brought up to date, finds what brute force over the database finds; also
    through ``match`` (the path screening takes)."""
    index = runtime.matcher.refresh()
    banks, entries = database_contents(runtime.database)
    baseline = BruteForce(entries)
    for query in queries:
        assert hits_of(index, query) == baseline.search(banks, query), f"query {query}"
    for query in queries[:10]:
        signals = Signals({}, (FrameHash(HashType.PDQ, query, 100, 0),), 1)
        matches = runtime.matcher.match(signals).matches
        found = Counter((match.bank, match.entry, match.distance) for match in matches)
        assert found == baseline.search(banks, query)
    return index


def queries_around(values: Sequence[str], rng: random.Random) -> list[str]:
    """Each value, and hashes 10, 31 and 32 bits from it (the banks' thresholds are 10 and 31)."""
    return [
        q for value in values for q in (value, *(flip_bits(value, g, rng) for g in (10, 31, 32)))
    ]


def saved_folders(runtime: Runtime) -> list[str]:
    root = runtime.settings.pdq_index_dir
    return sorted(path.name for path in root.iterdir() if path.is_dir() and path.name[0] != ".")


def remove(where: Runtime | Database, bank: str, value: str) -> None:
    database = where.database if isinstance(where, Runtime) else where
    admin.remove_hash(database, bank, value, actor=ACTOR)


def add(where: Runtime | Database, bank: str, values: Sequence[str]) -> None:
    """Import ``values`` into ``bank``, through this runtime or another process's database."""
    database = where.database if isinstance(where, Runtime) else where
    report = importer.import_values(database, bank, list(values), actor=ACTOR)
    assert report.bad_line_count == 0


# --- changes on top of the base --------------------------------------------------------------


def test_bank_changes_apply_on_top_of_the_base_without_a_rebuild(
    filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    rng = random.Random(9102)
    runtime = filled_runtime(hashes[:2400])
    queries = queries_around(rng.sample(hashes[:2400], 25), rng)
    first = assert_matches_database(runtime, queries)
    base, base_generation = first.base, first.base_generation
    assert all(part.segment.tables is not None for part in base)
    assert first.pending == 0

    new = hashes[2400:2700]

    def import_new() -> list[str]:
        add(runtime, "usual", new[:150])
        add(runtime, "strict", new[150:])
        return new[:20] + new[150:170]

    def remove_from_base() -> list[str]:
        gone = hashes[0:60:3]  # in "usual" since the base was built
        for value in gone:
            remove(runtime, "usual", value)
        return gone

    def remove_added() -> list[str]:
        for value in new[:10]:
            remove(runtime, "usual", value)
        return new[:10]

    def remove_and_re_add() -> list[str]:
        values = hashes[1:60:3]  # in "strict"
        for value in values:
            remove(runtime, "strict", value)
        add(runtime, "strict", values)
        add(runtime, "usual", hashes[0:30:3])  # removed from the base above, back again
        return values + hashes[0:30:3]

    def same_hash_in_another_bank() -> list[str]:
        add(runtime, "off", hashes[0:90:3])
        admin.update_bank(runtime.database, "off", enabled=True, actor=ACTOR)
        return hashes[0:90:3]

    def bank_settings() -> list[str]:
        admin.update_bank(runtime.database, "strict", threshold=31, actor=ACTOR)
        admin.update_bank(runtime.database, "usual", enabled=False, actor=ACTOR)
        return hashes[1:90:3]

    # Each step, and the entries added or removed since the base it leaves (a base entry removed
    # and added back counts once as each).
    steps: list[tuple[str, Callable[[], list[str]], int]] = [
        ("import", import_new, 300),
        ("remove from base", remove_from_base, 300 + 20),
        ("remove added", remove_added, 320 - 10),
        ("remove and re-add", remove_and_re_add, 310 + 20 + 20 + 10),
        ("another bank", same_hash_in_another_bank, 360 + 30),
        ("settings", bank_settings, 390),
    ]
    for name, step, pending in steps:
        touched = step()
        index = assert_matches_database(runtime, queries + queries_around(touched[:25], rng))
        assert index.base == base, name
        assert index.base_generation == base_generation, name
        assert index.pending == pending, name
    [saved] = saved_folders(runtime)  # the base built at the start, and no other
    assert saved.startswith(f"g{base_generation:012d}-")


def test_changes_made_through_another_process_are_followed(
    filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    rng = random.Random(9103)
    runtime = filled_runtime(hashes[:1500])
    base = assert_matches_database(runtime, []).base
    other = Database(runtime.settings.resolved_database_url)
    try:
        add(other, "usual", hashes[1500:1600])
        for value in hashes[0:30:3]:
            remove(other, "usual", value)
        admin.update_bank(other, "strict", threshold=12, actor="other process")
    finally:
        other.dispose()

    index = assert_matches_database(
        runtime, queries_around(hashes[1500:1510] + hashes[0:30:3] + hashes[1:30:3], rng)
    )

    assert index.base == base
    assert index.pending == 100 + 10


# --- rebuilding ------------------------------------------------------------------------------


def test_changes_past_the_limit_are_folded_into_a_new_base_in_the_background(
    filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    rng = random.Random(9104)
    runtime = filled_runtime(hashes[:1500], index_rebuild_after=50)
    first = assert_matches_database(runtime, [])
    queries = queries_around(rng.sample(hashes[:1500], 10) + hashes[1500:1510], rng)

    add(runtime, "usual", hashes[1500:1530])
    small = assert_matches_database(runtime, queries)
    runtime.matcher.wait_for_rebuild(30)
    assert runtime.matcher.index.base == first.base  # 30 changes: under the limit

    add(runtime, "usual", hashes[1530:1600])
    for value in hashes[0:15:3]:
        remove(runtime, "usual", value)
    during = assert_matches_database(runtime, queries)  # while the rebuild may be running
    assert during.pending == small.pending + 70 + 5
    runtime.matcher.wait_for_rebuild(60)

    rebuilt = assert_matches_database(runtime, queries)
    assert rebuilt.base != first.base
    assert rebuilt.base_generation > first.base_generation
    assert rebuilt.pending == 0
    assert len(rebuilt) == len(database_contents(runtime.database)[1])
    newest = saved_folders(runtime)[-1]
    assert newest.startswith(f"g{rebuilt.base_generation:012d}-")


def test_changes_made_while_rebuilding_are_kept(
    filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    rng = random.Random(9105)
    runtime = filled_runtime(hashes[:2400])
    assert_matches_database(runtime, [])
    add(runtime, "usual", hashes[2400:2500])
    runtime.matcher.refresh()

    rebuild = threading.Thread(target=runtime.matcher.rebuild)
    rebuild.start()
    add(runtime, "strict", hashes[2500:2600])
    remove(runtime, "usual", hashes[2400])
    remove(runtime, "usual", hashes[0])
    runtime.matcher.refresh()
    rebuild.join(60)

    assert_matches_database(
        runtime, queries_around([hashes[0], *hashes[2400:2405], *hashes[2500:2505]], rng)
    )


# --- opening a saved base --------------------------------------------------------------------


@pytest.mark.parametrize("memory_map", [True, False], ids=["memory-mapped", "read"])
def test_a_new_matcher_opens_the_saved_base_and_catches_up(
    filled_runtime: FilledRuntime, hashes: list[str], memory_map: bool
) -> None:
    rng = random.Random(9106)
    runtime = filled_runtime(hashes[:1800], index_memory_map=memory_map)
    built = assert_matches_database(runtime, [])
    folders = saved_folders(runtime)
    add(runtime, "usual", hashes[1800:1850])
    for value in hashes[0:30:3]:
        remove(runtime, "usual", value)
    admin.update_bank(runtime.database, "off", enabled=True, actor=ACTOR)

    restarted = Matcher(runtime.database, runtime.settings.matching, runtime.settings.pdq_index_dir)
    index = restarted.refresh()

    assert saved_folders(runtime) == folders  # nothing built, nothing saved
    assert index.base_generation == built.base_generation < index.generation
    assert index.pending == 50 + 10
    for part in index.base:
        vectors = part.segment.vectors
        assert isinstance(vectors, np.memmap) == memory_map
        if isinstance(vectors, np.memmap):
            assert Path(str(vectors.filename)).parent.name == folders[0]
    banks, entries = database_contents(runtime.database)
    baseline = BruteForce(entries)
    queries = queries_around(hashes[1800:1810] + hashes[0:30:3] + hashes[2:30:3], rng)
    for query in queries:
        assert hits_of(index, query) == baseline.search(banks, query)


def test_a_saved_base_counting_other_entries_than_the_database_is_rebuilt(
    filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    """The data folder moved to another database: its base does not describe this one."""
    rng = random.Random(9107)
    first = filled_runtime(hashes[:1500], "one.db")
    first.matcher.refresh()
    other_folders = saved_folders(first)

    second = filled_runtime(hashes[1500:2700], "two.db")
    index = assert_matches_database(second, queries_around(rng.sample(hashes[:2700], 30), rng))

    assert len(index) == 1200
    # The other database's base is discarded; this one's is built and saved.
    assert len(saved_folders(second)) == 1
    assert not set(saved_folders(second)) & set(other_folders)


def test_a_saved_base_from_another_database_of_the_same_size_is_not_trusted(
    filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    rng = random.Random(9108)
    first = filled_runtime(hashes[:1200], "one.db")
    first.matcher.refresh()

    # Another database, the same steps, other hashes: the counts agree at every generation.
    second = filled_runtime(hashes[1200:2400], "two.db")

    assert_matches_database(second, queries_around(rng.sample(hashes[:2400], 20), rng))


def test_database_restored_from_a_backup_is_followed(
    filled_runtime: FilledRuntime, tmp_path: Path, hashes: list[str]
) -> None:
    """The database goes back in time under a running matcher: its index starts afresh from
    a base the restored database agrees with, not from the changes it had seen."""
    rng = random.Random(9109)
    database_file = tmp_path / "vigil.db"
    runtime = filled_runtime(hashes[:1500])
    runtime.matcher.refresh()
    runtime.database.dispose()
    shutil.copyfile(database_file, tmp_path / "backup.db")
    add(runtime, "usual", hashes[1500:1600])
    for value in hashes[0:30:3]:
        remove(runtime, "usual", value)
    ahead = runtime.matcher.refresh()

    runtime.database.dispose()
    for journal in ("-wal", "-shm", "-journal"):
        Path(f"{database_file}{journal}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "backup.db", database_file)
    queries = queries_around(hashes[1500:1510] + hashes[0:30:3] + rng.sample(hashes, 10), rng)
    restored = assert_matches_database(runtime, queries)

    assert restored.generation < ahead.generation
    assert len(restored) == 1500


def test_a_fresh_database_behind_the_saved_bases_is_rebuilt(
    filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    """Saved bases newer than the database (another database's, or before a restore) are not
    opened: the index is built from what the database holds."""
    rng = random.Random(9110)
    first = filled_runtime(hashes[:900], "one.db", index_rebuild_after=0)
    first.matcher.refresh()
    for number in range(3):  # every change rebuilds: bases at later generations
        add(first, "usual", hashes[900 + 10 * number : 910 + 10 * number])
        first.matcher.refresh()
        first.matcher.wait_for_rebuild(30)
    newest_generation = first.matcher.index.base_generation

    second = filled_runtime(hashes[1000:1200], "two.db")
    index = assert_matches_database(second, queries_around(rng.sample(hashes[:1200], 20), rng))

    assert index.generation < newest_generation
    assert index.base_generation == index.generation  # built, not opened


def test_a_base_built_for_a_database_behind_the_saved_ones_is_kept(
    filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    first = filled_runtime(hashes[:900], "one.db", index_rebuild_after=0)
    first.matcher.refresh()
    for number in range(3):
        add(first, "usual", hashes[900 + 10 * number : 910 + 10 * number])
        first.matcher.refresh()
        first.matcher.wait_for_rebuild(30)
    second = filled_runtime(hashes[1000:1200], "two.db")
    built = second.matcher.refresh()
    assert f"g{built.base_generation:012d}" in {name[:13] for name in saved_folders(second)}

    restarted = Matcher(second.database, second.settings.matching, second.settings.pdq_index_dir)
    index = restarted.refresh()

    assert index.base_generation == built.base_generation
    assert all(isinstance(part.segment.vectors, np.memmap) for part in index.base)


# --- PostgreSQL ------------------------------------------------------------------------------


def test_index_follows_changes_and_reopens_on_postgresql(
    postgres_url: str, filled_runtime: FilledRuntime, hashes: list[str]
) -> None:
    rng = random.Random(9111)
    runtime = filled_runtime(hashes[:1500], postgres_url)
    assert runtime.database.dialect == "postgresql"
    built = assert_matches_database(runtime, [])
    other = Database(postgres_url)
    try:
        add(other, "usual", hashes[1500:1560])
        for value in hashes[0:30:3]:
            remove(other, "usual", value)
        add(other, "usual", hashes[0:15:3])
        admin.update_bank(other, "off", enabled=True, actor="other process")
    finally:
        other.dispose()
    queries = queries_around(hashes[1500:1505] + hashes[0:30:3] + hashes[2:20:3], rng)

    followed = assert_matches_database(runtime, queries)
    restarted = Matcher(runtime.database, runtime.settings.matching, runtime.settings.pdq_index_dir)
    reopened = restarted.refresh()

    assert followed.base == built.base
    assert reopened.base_generation == built.base_generation < reopened.generation
    assert reopened.pending == followed.pending == 60 + 10 + 5
    banks, entries = database_contents(runtime.database)
    baseline = BruteForce(entries)
    for query in queries:
        assert hits_of(reopened, query) == baseline.search(banks, query)


def test_matching_goes_on_when_the_saved_index_cannot_be_written(
    tmp_path: Path, make_runtime: Callable[[Settings], Runtime]
) -> None:
    """A full or read-only disk loses the saved form, never the screening: the index is built
    in memory and finds what the banks hold."""
    settings = load_settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    settings.pdq_index_dir.write_text("not a folder")  # every write below it fails
    runtime = make_runtime(settings)
    rng = random.Random(9411)
    known = random_hash(rng)
    bank_with(runtime, "known", HashType.PDQ, values=[known])

    hits = runtime.matcher.refresh().search(flip_bits(known, 31, rng))

    assert [(hit.bank.name, hit.entry, hit.distance) for hit in hits] == [("known", known, 31)]
    assert settings.pdq_index_dir.read_text() == "not a folder"
