"""The PDQ index against brute force and the ``threatexchange`` package's PDQ index.

Same hashes, same queries, same run, at each size: build time, memory, median and 99th percentile
query time, and recall against brute force (and results brute force does not give, which must be
none). Per query the three are timed back to back (in a rotating order), so a slow spell of the
machine lands on all of them.

The bank is random 256-bit hashes: real lists of millions cannot be made here (hashing ten
million generated pictures would take hours), and random bits are what an index of unrelated
images looks like to its tables. The tests check exactness on real PDQ hashes. Queries are the
hard cases: half are entries moved 0-31 bits (each must be found), a quarter moved 32-40 bits
(near misses), a quarter unrelated.
"""

from __future__ import annotations

import gc
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench.timing import Timing
from vigil.matching import mih
from vigil.matching.banks import BankAction, BankInfo
from vigil.matching.index import IndexPart, PdqIndex
from vigil.matching.saved import IndexFolder
from vigil.signals import HashType

THRESHOLD = 31
QUERIES = 400
WARMUP = 20
BRUTE_FORCE_QUERIES = 60  # brute force reads every hash per query: fewer samples at ten million
_T = TypeVar("_T")
BANK = BankInfo(1, "bench", HashType.PDQ, BankAction.BLOCK, THRESHOLD, enabled=True)


@dataclass(frozen=True)
class Contender:
    name: str
    build_seconds: float
    array_bytes: float | None  # per hash: the structure's arrays (None: not known)
    resident_bytes: float  # per hash: resident memory the structure added while built
    timing: Timing
    recall: float  # share of brute force's (query, entry) pairs found
    extra: int  # pairs found that brute force does not find (must be 0)


@dataclass(frozen=True)
class SizeResult:
    size: int
    pairs: int  # (query, entry) pairs within the threshold, per brute force
    contenders: tuple[Contender, ...]
    load_seconds: float  # opening the saved form (memory-mapped)
    read_seconds: float  # reading the saved form into memory instead
    saved_bytes: int


@dataclass(frozen=True)
class MatcherResult:
    sizes: tuple[SizeResult, ...]
    threatexchange_version: str
    queries: int


class NumpyBruteForce:
    """Every hash compared with NumPy, column by column (the index Vigil had before)."""

    def __init__(self, vectors: mih.Vectors) -> None:
        self._vectors = vectors
        self._columns = [np.ascontiguousarray(vectors[:, word]) for word in range(4)]

    def search(self, query: str) -> set[str]:
        words = mih.words_from_hex(query)
        distances = np.bitwise_count(self._columns[0] ^ words[0]).astype(np.uint16)
        for column, word in zip(self._columns[1:], words[1:], strict=True):
            distances += np.bitwise_count(column ^ word)
        rows = np.flatnonzero(distances <= THRESHOLD)
        return {mih.hex_from_words(self._vectors[row]) for row in rows}


class CompiledBruteForce:
    """Every hash compared by the compiled loop Vigil falls back to for wide thresholds."""

    def __init__(self, vectors: mih.Vectors) -> None:
        self._segment = mih.Segment(vectors, np.zeros(vectors.shape[0], np.uint16), None)
        self._limits = np.array([THRESHOLD], dtype=np.int16)

    def search(self, query: str) -> set[str]:
        rows, _ = self._segment.search(mih.Query.from_hex(query), self._limits)
        return {mih.hex_from_words(self._segment.vectors[row]) for row in rows}


def measure_matcher(sizes: Sequence[int], seed: int) -> MatcherResult:
    from importlib.metadata import version

    # Compile (or load from Numba's cache) the kernels first, so no size pays for it.
    warm = _vigil_index(
        np.random.default_rng(seed).integers(0, 1 << 62, (mih.SMALLEST_TABLED, 4), np.uint64)
    )
    warm.search("0" * 64)
    results = []
    for size in sizes:
        print(f"matcher: {size:,} hashes ...", file=sys.stderr, flush=True)
        results.append(_measure_size(size, np.random.default_rng(seed + size)))
        gc.collect()
    return MatcherResult(tuple(results), version("threatexchange"), QUERIES)


def _measure_size(size: int, rng: np.random.Generator) -> SizeResult:
    vectors = rng.integers(0, np.iinfo(np.uint64).max, (size, 4), np.uint64, endpoint=True)
    queries = _queries(vectors, rng)

    numpy_brute, numpy_build, _ = _built(lambda: NumpyBruteForce(vectors))
    compiled_brute, compiled_build, _ = _built(lambda: CompiledBruteForce(vectors))
    ours, our_build, our_bytes = _built(lambda: _vigil_index(vectors))
    theirs, their_build, their_bytes = _built(lambda: _threatexchange_index(vectors))

    truth = [compiled_brute.search(query) for query in queries]
    for query, rows in zip(queries[:BRUTE_FORCE_QUERIES], truth, strict=False):
        if numpy_brute.search(query) != rows:
            raise RuntimeError("the two brute-force searches disagree")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-index-") as folder:
        saved_form = IndexFolder(Path(folder), memory_map=True)
        saved = saved_form.save(ours, database="bench")
        saved_bytes = sum(path.stat().st_size for path in saved.folder.iterdir())
        started = time.perf_counter()
        mapped = saved_form.load(saved, [BANK])
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        IndexFolder(Path(folder), memory_map=False).load(saved, [BANK])
        read_seconds = time.perf_counter() - started
        cases: dict[str, Callable[[str], set[str]]] = {
            "vigil": lambda query: {hit.entry for hit in ours.search(query)},
            "mapped": lambda query: {hit.entry for hit in mapped.search(query)},
            "threatexchange": lambda query: {
                mih.hex_from_words(vectors[match.metadata]) for match in theirs.query(query)
            },
            "compiled": compiled_brute.search,
            "numpy": numpy_brute.search,
        }
        samples, found = _time_queries(cases, queries)
        # The same queries again, nothing else run between them: the rotation above lets brute
        # force sweep hundreds of megabytes through the caches before each of Vigil's queries.
        alone_samples, alone_found = _time_queries(
            {"alone": lambda query: {hit.entry for hit in ours.search(query)}}, queries
        )
        samples.update(alone_samples)
        found.update(alone_found)

    arrays = ours.nbytes
    rows: tuple[tuple[str, str, float, float | None, int], ...] = (
        ("vigil", "**Vigil's index**, built in memory", our_build, arrays, our_bytes),
        ("alone", "Vigil's index, built in memory, queries back to back", 0.0, arrays, 0),
        ("mapped", "Vigil's index, memory-mapped from its saved form", load_seconds, arrays, 0),
        ("threatexchange", "`threatexchange` PDQIndex", their_build, None, their_bytes),
        ("compiled", "brute force, compiled (Vigil's fallback)", compiled_build, 34 * size, 0),
        ("numpy", "brute force, NumPy (Vigil's index before)", numpy_build, 32 * size, 0),
    )
    contenders = []
    for key, label, build, array_bytes, resident in rows:
        recall, extra = _recall(found[key], truth)
        contenders.append(
            Contender(
                label,
                build,
                None if array_bytes is None else array_bytes / size,
                resident / size,
                Timing(tuple(samples[key])),
                recall,
                extra,
            )
        )
    pairs = sum(len(rows) for rows in truth[WARMUP:])
    return SizeResult(size, pairs, tuple(contenders), load_seconds, read_seconds, saved_bytes)


def _queries(vectors: mih.Vectors, rng: np.random.Generator) -> list[str]:
    size = vectors.shape[0]
    queries = []
    for number in range(QUERIES + WARMUP):
        kind = number % 4
        if kind == 3:
            words = rng.integers(0, np.iinfo(np.uint64).max, 4, np.uint64, endpoint=True)
        else:
            distance = (
                int(rng.integers(0, THRESHOLD + 1)) if kind < 2 else int(rng.integers(32, 41))
            )
            words = _flipped(vectors[int(rng.integers(size))], distance, rng)
        queries.append(mih.hex_from_words(words))
    return queries


def _flipped(words: mih.Vectors, count: int, rng: np.random.Generator) -> mih.Vectors:
    moved = np.array(words, dtype=np.uint64)
    for bit in rng.choice(256, size=count, replace=False):
        moved[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return moved


def _vigil_index(vectors: mih.Vectors) -> PdqIndex:
    bank_ids = np.full(vectors.shape[0], BANK.id, dtype=np.int64)
    parts = [
        IndexPart.build(
            vectors[start : start + mih.MAX_ROWS], bank_ids[start : start + mih.MAX_ROWS]
        )
        for start in range(0, vectors.shape[0], mih.MAX_ROWS)
    ]
    return PdqIndex([BANK], parts, 1)


def _threatexchange_index(vectors: mih.Vectors) -> Any:
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    return PDQIndex((mih.hex_from_words(row), number) for number, row in enumerate(vectors))


def _built(make: Callable[[], _T]) -> tuple[_T, float, int]:
    """The structure, its build time and the resident memory it added (bytes)."""
    gc.collect()
    before = _resident_bytes()
    started = time.perf_counter()
    built = make()
    seconds = time.perf_counter() - started
    gc.collect()
    return built, seconds, max(0, _resident_bytes() - before)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def _time_queries(
    cases: dict[str, Callable[[str], set[str]]], queries: list[str]
) -> tuple[dict[str, list[float]], dict[str, list[set[str]]]]:
    """Every case on every query, in a rotating order; NumPy's brute force (a tenth of a second a
    query at ten million) only on the first BRUTE_FORCE_QUERIES."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    found: dict[str, list[set[str]]] = {name: [] for name in names}
    for number, query in enumerate(queries):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            if name == "numpy" and number >= WARMUP + BRUTE_FORCE_QUERIES:
                continue
            started = time.perf_counter()
            rows = cases[name](query)
            elapsed = time.perf_counter() - started
            if number >= WARMUP:
                samples[name].append(elapsed)
                found[name].append(rows)
    return samples, found


def _recall(found: list[set[str]], truth: list[set[str]]) -> tuple[float, int]:
    timed_truth = truth[WARMUP:][: len(found)]
    wanted = sum(len(rows) for rows in timed_truth)
    hit = sum(len(rows & want) for rows, want in zip(found, timed_truth, strict=True))
    extra = sum(len(rows - want) for rows, want in zip(found, timed_truth, strict=True))
    return (hit / wanted if wanted else 1.0), extra


def render_matcher(result: MatcherResult) -> str:
    """The matcher section of RESULTS.md."""
    lines = [
        "## PDQ index: Vigil vs brute force vs threatexchange",
        "",
        f"A bank of random 256-bit hashes at each size, threshold {THRESHOLD}; {result.queries} "
        f"queries after {WARMUP} untimed ones: half are entries moved 0-{THRESHOLD} bits (each "
        "must be found), a quarter moved 32-40 bits (near misses), a quarter unrelated. Per query "
        "every contender runs back to back, in a rotating order. NumPy's brute force runs on the "
        f"first {BRUTE_FORCE_QUERIES} queries only (a tenth of a second each at ten million). "
        "**Recall** is the share of the (query, entry) pairs within the threshold, per the "
        "compiled brute force (checked against NumPy's), that the contender found; **extra** "
        "counts pairs it returned beyond the threshold. **Arrays** is the size of the structure's "
        "arrays per hash; **resident** the memory the process grew by while building it (the "
        "memory-mapped index's pages are the page cache's, shared by every process that maps "
        "them; the brute-force rows reuse the benchmark's own array). The memory-mapped row's "
        "build column is the time to open the saved form (checking its SHA-256 digests). The "
        "*back to back* row times Vigil's index on the same queries with nothing between them; "
        "every other row is measured in the rotation, where brute force sweeps the caches before "
        "each query (a pessimistic neighbour). `threatexchange` "
        f"{result.threatexchange_version}: its default PDQ index (`PdqSignal.get_index_cls()`), a "
        "faiss `IndexBinaryMultiHash` of 16 sub-hashes.",
        "",
    ]
    for size in result.sizes:
        base = _by_label(size, "NumPy").timing.median
        theirs = _by_label(size, "threatexchange").timing.median
        lines += [
            f"### {size.size:,} hashes",
            "",
            f"{size.pairs:,} pairs within the threshold. Saved form: "
            f"{size.saved_bytes / size.size:.1f} bytes a hash on disk, opened (memory-mapped) in "
            f"{size.load_seconds * 1000:.1f} ms, or read into memory in "
            f"{size.read_seconds:.2f} s (`matching.index_memory_map = false`).",
            "",
            "| Search | build s | arrays B/hash | resident B/hash | p50 ms | p99 ms | recall "
            "| extra | × faster than NumPy brute force | × faster than threatexchange |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for contender in size.contenders:
            timing = contender.timing
            arrays = "—" if contender.array_bytes is None else f"{contender.array_bytes:.1f}"
            lines.append(
                f"| {contender.name} | {contender.build_seconds:.2f} | {arrays} "
                f"| {contender.resident_bytes:.1f} | {timing.median * 1000:.3f} "
                f"| {timing.p99 * 1000:.3f} | {contender.recall:.4f} | {contender.extra} "
                f"| {base / timing.median:.1f}× | {theirs / timing.median:.2f}× |"
            )
        lines.append("")
    largest = result.sizes[-1]
    ours = largest.contenders[0].timing
    alone = _by_label(largest, "back to back").timing
    lines += [
        f"At {largest.size:,} hashes Vigil's index answers in {ours.median * 1000:.3f} ms "
        f"(median; p99 {ours.p99 * 1000:.3f} ms; {alone.median * 1000:.3f} and "
        f"{alone.p99 * 1000:.3f} ms with queries back to back): "
        f"{_by_label(largest, 'threatexchange').timing.median / ours.median:.1f}× faster than "
        f"threatexchange's and {_by_label(largest, 'NumPy').timing.median / ours.median:.0f}× "
        "faster than NumPy's brute force, with the same results as brute force.",
        "",
    ]
    return "\n".join(lines)


def headline_matcher(result: MatcherResult) -> list[str]:
    """The figures the closing note of RESULTS.md quotes: the largest size."""
    largest = result.sizes[-1]
    ours = largest.contenders[0]
    theirs = _by_label(largest, "threatexchange")
    brute = _by_label(largest, "NumPy")
    alone = _by_label(largest, "back to back")
    return [
        f"- **PDQ index at {largest.size:,} hashes**: p50 {ours.timing.median * 1000:.3f} ms, "
        f"p99 {ours.timing.p99 * 1000:.3f} ms (queries back to back: p50 "
        f"{alone.timing.median * 1000:.3f} ms, p99 {alone.timing.p99 * 1000:.3f} ms); "
        f"{theirs.timing.median / ours.timing.median:.1f}× faster than `threatexchange` "
        f"(p50 {theirs.timing.median * 1000:.2f} ms), "
        f"{brute.timing.median / ours.timing.median:.0f}× faster than brute force "
        f"(p50 {brute.timing.median * 1000:.1f} ms); recall {ours.recall:.4f} with "
        f"{ours.extra} extra; {ours.array_bytes or 0:.1f} bytes a hash; saved form opened in "
        f"{largest.load_seconds * 1000:.0f} ms.",
    ]


def _by_label(size: SizeResult, word: str) -> Contender:
    return next(contender for contender in size.contenders if word in contender.name)


if __name__ == "__main__":
    chosen = [int(value) for value in (sys.argv[1] if len(sys.argv) > 1 else "100000").split(",")]
    print(render_matcher(measure_matcher(chosen, seed=20240601)))
