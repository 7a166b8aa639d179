"""Multi-index hashing: every 256-bit hash within a radius of a query, without reading them all.

Why it is exact (the generalised pigeonhole principle): the 256 bits are split into
``CHUNKS`` = 11 chunks, and chunk *i* gets a budget τ_i with Σ τ_i ≥ R − CHUNKS + 1. If two hashes
are at most R bits apart, some chunk differs in at most τ_i bits: were every chunk at least
τ_i + 1 apart, the total would be at least Σ τ_i + CHUNKS > R. So a search looks up, in each
chunk's table, the keys within τ_i of the query's key, and checks the full distance of every
hash found there: nothing within R is missed, nothing beyond it is returned. Eleven chunks of
23-24 bits is the classic choice for ten million 256-bit codes (chunk bits ≈ log2 of the count):
shorter chunks put more hashes in each bucket, longer ones need many more keys looked up.

A segment (at most 2**24 hashes) is a handful of plain NumPy arrays, saved as ``.npy`` files that
several processes can memory-map and share:

- ``vectors`` (n, 4) uint64: the hashes, sorted by chunk 0, so chunk 0 needs no table of its own;
- ``slots`` (n,) uint16: which bank each hash is in (an index into the index's list of banks);
- ``tails0`` (n,) uint8: chunk 0's bits below its bucket (``postings`` keep them for the others);
- ``offsets`` (CHUNKS, 2**b + 1) uint32: where each bucket (the top b bits of a chunk) starts;
- ``postings`` (CHUNKS − 1, n) uint32: chunks 1-10's rows, bucket by bucket; the row in the low 24
  bits, the chunk's next (up to) 8 bits in the high 8, so most hashes in a bucket are rejected
  without reading their vector.

About 79 bytes a hash at ten million (32 of them the hash itself). Bits are taken into chunks in
a strided order (bit 97·k mod 256 is the k-th): PDQ's bits are DCT coefficients in frequency
order, and neighbouring coefficients agree across many images; spreading them keeps real hashes'
chunks from crowding into a few buckets.

The kernels are compiled by Numba (cached on disk after the first run): the search is a few
thousand scattered memory reads, which a Python loop would spend a hundred times longer on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

CHUNKS = 11
CHUNK_BITS = np.array([24, 24, 24] + [23] * 8, dtype=np.int64)
CHUNK_STARTS = np.concatenate(([0], np.cumsum(CHUNK_BITS)[:-1])).astype(np.int64)
# The k-th bit of the chunked order is bit (97·k mod 256) of the hash: 97 is odd, so this visits
# every bit once, and consecutive bits land 97 apart.
BIT_ORDER = (np.arange(256, dtype=np.int64) * 97) % 256
MAX_ROWS = 1 << 24  # rows are packed into 24 bits of a posting
TAIL_BITS = 8
# Budgets above this make the tables slower than reading every hash (thousands of buckets).
MAX_BUDGET = 3
SMALLEST_TABLED = 32_768  # fewer hashes than this are compared one by one: measured faster
_MIN_BUCKET_BITS = 8
_MAX_BUCKET_BITS = 20  # 11 tables of 2**20 offsets: 44 MiB, ~4 bytes a hash at ten million
_FIRST_RESULTS = 64

Vectors = npt.NDArray[np.uint64]
Ints = npt.NDArray[np.int64]
_F = TypeVar("_F", bound=Callable[..., Any])


def _compiled(function: _F) -> _F:
    """Numba's nopython compilation, cached on disk; typed as the Python function it replaces."""
    return cast(_F, numba.njit(cache=True, nogil=True)(function))


class SegmentFormatError(ValueError):
    """A saved segment is missing, truncated or inconsistent."""


@_compiled
def _popcount64(x: Any) -> Any:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@_compiled
def _popcount8(x: Any) -> Any:
    x = x - ((x >> np.uint32(1)) & np.uint32(0x55))
    x = (x & np.uint32(0x33)) + ((x >> np.uint32(2)) & np.uint32(0x33))
    return np.int64((x + (x >> np.uint32(4))) & np.uint32(0x0F))


@_compiled
def _distance(vectors: Any, row: Any, query: Any) -> Any:
    return (
        _popcount64(vectors[row, 0] ^ query[0])
        + _popcount64(vectors[row, 1] ^ query[1])
        + _popcount64(vectors[row, 2] ^ query[2])
        + _popcount64(vectors[row, 3] ^ query[3])
    )


@_compiled
def _chunk_keys(vectors: Any, chunk: Any, order: Any, starts: Any, sizes: Any, out: Any) -> None:
    """Chunk ``chunk``'s key of every vector (its bits in chunk order, first bit highest)."""
    start = starts[chunk]
    size = sizes[chunk]
    for row in range(vectors.shape[0]):
        key = np.uint32(0)
        for position in range(size):
            bit = order[start + position]
            word = vectors[row, bit >> 6]
            key = (key << np.uint32(1)) | np.uint32((word >> np.uint64(63 - (bit & 63))) & 1)
        out[row] = key


@_compiled
def _split_query(
    words: Any, bits: Any, order: Any, starts: Any, sizes: Any, tops: Any, tails: Any
) -> None:
    """:func:`split_key` of every chunk of one hash, in one call."""
    for chunk in range(starts.shape[0]):
        key = np.int64(0)
        for position in range(sizes[chunk]):
            bit = order[starts[chunk] + position]
            key = (key << 1) | np.int64((words[bit >> 6] >> np.uint64(63 - (bit & 63))) & 1)
        below = sizes[chunk] - bits
        tail_bits = min(8, below)
        tops[chunk] = key >> below
        tails[chunk] = (key >> (below - tail_bits)) & ((1 << tail_bits) - 1)


@_compiled
def _counting_sort(buckets: Any, bucket_count: Any) -> Any:
    """Rows grouped by bucket (stable), and where each bucket starts: one pass to count, one to
    place; linear, where a comparison sort of ten million keys takes seconds."""
    offsets = np.zeros(bucket_count + 1, dtype=np.uint32)
    for row in range(buckets.shape[0]):
        offsets[buckets[row] + 1] += 1
    for bucket in range(bucket_count):
        offsets[bucket + 1] += offsets[bucket]
    fill = offsets[:-1].copy()
    order = np.empty(buckets.shape[0], dtype=np.uint32)
    for row in range(buckets.shape[0]):
        bucket = buckets[row]
        order[fill[bucket]] = row
        fill[bucket] += 1
    return offsets, order


@_compiled
def _search_tables(
    vectors: Any,
    slots: Any,
    tails0: Any,
    offsets: Any,
    postings: Any,
    limits: Any,
    query: Any,
    tops: Any,
    tails: Any,
    budgets: Any,
    masks: Any,
    weights: Any,
    out_rows: Any,
    out_distances: Any,
) -> Any:
    """Rows within their bank's limit of ``query``; returns how many (only the first
    ``len(out_rows)`` are written). A row found through several chunks is reported each time.

    In three passes (buckets, then candidates, then distances) rather than one nested loop: each
    pass's memory reads do not depend on each other, so the processor overlaps their cache misses.
    """
    chunks = offsets.shape[0]
    probes = 0
    for chunk in range(chunks):
        for k in range(masks.shape[0]):
            if weights[k] > budgets[chunk]:
                break
            probes += 1
    probe_chunk = np.empty(probes, dtype=np.int64)
    probe_start = np.empty(probes, dtype=np.int64)
    probe_end = np.empty(probes, dtype=np.int64)
    probe_slack = np.empty(probes, dtype=np.int64)
    probe = 0
    candidates = 0
    for chunk in range(chunks):
        for k in range(masks.shape[0]):
            if weights[k] > budgets[chunk]:
                break
            bucket = tops[chunk] ^ masks[k]
            probe_chunk[probe] = chunk
            probe_start[probe] = offsets[chunk, bucket]
            probe_end[probe] = offsets[chunk, bucket + 1]
            probe_slack[probe] = budgets[chunk] - weights[k]
            candidates += probe_end[probe] - probe_start[probe]
            probe += 1
    rows = np.empty(candidates, dtype=np.int64)
    found = 0
    for probe in range(probes):
        chunk = probe_chunk[probe]
        slack = probe_slack[probe]
        tail = np.uint32(tails[chunk])
        for position in range(probe_start[probe], probe_end[probe]):
            if chunk == 0:
                row = np.int64(position)
                row_tail = np.uint32(tails0[position])
            else:
                posting = postings[chunk - 1, position]
                row = np.int64(posting & np.uint32(0xFFFFFF))
                row_tail = np.uint32(posting >> np.uint32(24))
            # The row check costs nothing measurable and keeps a damaged table from reading
            # outside the arrays.
            if _popcount8(row_tail ^ tail) <= slack and row < vectors.shape[0]:
                rows[found] = row
                found += 1
    matches = 0
    for index in range(found):
        row = rows[index]
        distance = _distance(vectors, row, query)
        if distance <= limits[slots[row]]:
            if matches < out_rows.shape[0]:
                out_rows[matches] = row
                out_distances[matches] = distance
            matches += 1
    return matches


@_compiled
def _search_all(
    vectors: Any, slots: Any, limits: Any, query: Any, out_rows: Any, out_distances: Any
) -> Any:
    """Every row compared: for small segments, and radii too wide for the tables.

    The match test is written out here as in :func:`_search_tables`: as a shared compiled helper
    (even inlined) it made this loop five times slower, the compiler no longer unrolling it.
    """
    matches = 0
    for row in range(vectors.shape[0]):
        distance = _distance(vectors, row, query)
        if distance <= limits[slots[row]]:
            if matches < out_rows.shape[0]:
                out_rows[matches] = row
                out_distances[matches] = distance
            matches += 1
    return matches


def chunk_budgets(radius: int) -> Ints:
    """Per chunk, the bits a key may differ by so that no hash within ``radius`` is missed
    (−1: the chunk need not be searched)."""
    base, extra = divmod(radius - CHUNKS + 1, CHUNKS)
    return np.array([base + 1 if chunk < extra else base for chunk in range(CHUNKS)], np.int64)


@cache
def _budgets(radius: int) -> Ints:
    return chunk_budgets(radius)


@cache
def tables_cover(radius: int) -> bool:
    """Whether the tables answer a search of ``radius`` faster than comparing every hash."""
    return int(chunk_budgets(radius).max()) <= MAX_BUDGET


def bucket_bits(rows: int) -> int:
    """Top bits of a key addressed directly: about eight hashes a bucket."""
    wanted = round(np.log2(max(rows, 1) / 8))
    return int(min(_MAX_BUCKET_BITS, max(_MIN_BUCKET_BITS, wanted)))


@cache
def _masks(bits: int) -> tuple[npt.NDArray[np.uint32], Ints]:
    """Every ``bits``-bit mask of at most MAX_BUDGET set bits, fewest first, and their weights."""
    masks: list[int] = [0]
    for weight in range(1, MAX_BUDGET + 1):
        frontier = [mask for mask in masks if mask.bit_count() == weight - 1]
        grown = {
            mask | (1 << bit) for mask in frontier for bit in range(bits) if not mask >> bit & 1
        }
        masks.extend(sorted(grown))
    weights = np.array([mask.bit_count() for mask in masks], dtype=np.int64)
    return np.array(masks, dtype=np.uint32), weights


def chunk_keys(vectors: Vectors, chunk: int) -> npt.NDArray[np.uint32]:
    keys = np.empty(vectors.shape[0], dtype=np.uint32)
    _chunk_keys(vectors, chunk, BIT_ORDER, CHUNK_STARTS, CHUNK_BITS, keys)
    return keys


def split_key(
    keys: npt.NDArray[np.uint32], chunk: int, bits: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """A chunk's keys as (bucket, tail): the top ``bits`` bits, and up to 8 bits below them."""
    below = int(CHUNK_BITS[chunk]) - bits
    tail_bits = min(TAIL_BITS, below)
    buckets = keys >> np.uint32(below)
    tails = (keys >> np.uint32(below - tail_bits)) & np.uint32((1 << tail_bits) - 1)
    return buckets, tails


@dataclass(frozen=True, eq=False)
class Segment:
    """Up to 2**24 hashes and, from SMALLEST_TABLED up, their chunk tables (immutable)."""

    vectors: Vectors
    slots: npt.NDArray[np.uint16]
    tables: _Tables | None

    @classmethod
    def build(cls, vectors: Vectors, slots: npt.NDArray[np.uint16]) -> Segment:
        """Index ``vectors`` (one row of four big-endian words per hash); rows get reordered."""
        rows = vectors.shape[0]
        if rows > MAX_ROWS:
            raise ValueError(f"a segment holds at most {MAX_ROWS} hashes, not {rows}")
        vectors = np.ascontiguousarray(vectors, dtype=np.uint64)
        slots = np.ascontiguousarray(slots, dtype=np.uint16)
        if rows < SMALLEST_TABLED:
            return cls(vectors, slots, None)
        bits = bucket_bits(rows)
        first, tails0 = split_key(chunk_keys(vectors, 0), 0, bits)
        offsets = np.empty((CHUNKS, (1 << bits) + 1), dtype=np.uint32)
        offsets[0], order = _counting_sort(first, 1 << bits)
        vectors, slots = vectors[order], slots[order]
        tails0 = tails0[order].astype(np.uint8)
        postings = np.empty((CHUNKS - 1, rows), dtype=np.uint32)
        for chunk in range(1, CHUNKS):
            buckets, tails = split_key(chunk_keys(vectors, chunk), chunk, bits)
            offsets[chunk], order = _counting_sort(buckets, 1 << bits)
            postings[chunk - 1] = (tails[order] << np.uint32(24)) | order
        return cls(vectors, slots, _Tables(bits, tails0, offsets, postings))

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def nbytes(self) -> int:
        tables = self.tables
        extra = 0 if tables is None else tables.nbytes
        return int(self.vectors.nbytes + self.slots.nbytes + extra)

    def search(self, query: Query, limits: npt.NDArray[np.int16]) -> tuple[Ints, Ints]:
        """Rows within their slot's limit (−1: never) of the query, and their distances;
        each row once."""
        radius = int(limits.max(initial=-1))
        if radius < 0 or not len(self):
            return _NO_ROWS, _NO_ROWS
        size = _FIRST_RESULTS
        while True:
            rows, distances = np.empty(size, np.int64), np.empty(size, np.int64)
            found = self._search_into(query, limits, radius, rows, distances)
            if found <= size:
                break
            size = found
        if found < 2:
            return rows[:found], distances[:found]
        rows, first = np.unique(rows[:found], return_index=True)
        return rows, distances[:found][first]

    def _search_into(
        self, query: Query, limits: npt.NDArray[np.int16], radius: int, rows: Ints, distances: Ints
    ) -> int:
        tables = self.tables
        if tables is None or not tables_cover(radius):
            return int(_search_all(self.vectors, self.slots, limits, query.words, rows, distances))
        tops, tails = query.split(tables.bits)
        masks, weights = _masks(tables.bits)
        return int(
            _search_tables(
                self.vectors,
                self.slots,
                tables.tails0,
                tables.offsets,
                tables.postings,
                limits,
                query.words,
                tops,
                tails,
                _budgets(radius),
                masks,
                weights,
                rows,
                distances,
            )
        )

    def save(self, folder: Path, name: str) -> None:
        """Write the arrays as ``<name>-<array>.npy`` (NumPy's own format: no pickle)."""
        _save(folder / f"{name}-vectors.npy", self.vectors)
        _save(folder / f"{name}-slots.npy", self.slots)
        if self.tables is not None:
            _save(folder / f"{name}-tails0.npy", self.tables.tails0)
            _save(folder / f"{name}-offsets.npy", self.tables.offsets)
            _save(folder / f"{name}-postings.npy", self.tables.postings)

    @classmethod
    def load(cls, folder: Path, name: str, *, tabled: bool, memory_map: bool) -> Segment:
        """The segment :meth:`save` wrote; memory-mapped read-only, or read into memory."""
        vectors = _load(folder / f"{name}-vectors.npy", np.uint64, memory_map)
        rows = vectors.shape[0] if vectors.ndim == 2 else -1
        if vectors.ndim != 2 or vectors.shape[1] != 4 or rows > MAX_ROWS:
            raise SegmentFormatError(f"{name}: vectors have shape {vectors.shape}")
        slots = _load(folder / f"{name}-slots.npy", np.uint16, memory_map)
        if slots.shape != (rows,):
            raise SegmentFormatError(f"{name}: {slots.shape[0]} slots for {rows} hashes")
        if not tabled:
            return cls(vectors, slots, None)
        tails0 = _load(folder / f"{name}-tails0.npy", np.uint8, memory_map)
        offsets = _load(folder / f"{name}-offsets.npy", np.uint32, memory_map)
        postings = _load(folder / f"{name}-postings.npy", np.uint32, memory_map)
        bits = bucket_bits(rows)
        if (
            tails0.shape != (rows,)
            or offsets.shape != (CHUNKS, (1 << bits) + 1)
            or postings.shape != (CHUNKS - 1, rows)
            or int(offsets[:, 0].max()) != 0
            or int(offsets[:, -1].min()) != rows
            or int(offsets[:, -1].max()) != rows
            or bool((np.diff(offsets, axis=1) > rows).any())  # a count past the rows: wrapped
        ):
            raise SegmentFormatError(f"{name}: the tables do not fit {rows} hashes")
        return cls(vectors, slots, _Tables(bits, tails0, offsets, postings))


@dataclass(frozen=True, eq=False)
class _Tables:
    bits: int
    tails0: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.uint32]
    postings: npt.NDArray[np.uint32]

    @property
    def nbytes(self) -> int:
        return int(self.tails0.nbytes + self.offsets.nbytes + self.postings.nbytes)


class Query:
    """One hash prepared for searching: its words, and its chunk keys split for each bucket
    width asked for (computed once, used by every segment)."""

    __slots__ = ("_split", "words")

    def __init__(self, words: Vectors) -> None:
        self.words = words
        self._split: dict[int, tuple[Ints, Ints]] = {}

    @classmethod
    def from_hex(cls, value: str) -> Query:
        return cls(words_from_hex(value))

    def split(self, bits: int) -> tuple[Ints, Ints]:
        """Per chunk, the query key's bucket (top ``bits`` bits) and tail (up to 8 below)."""
        found = self._split.get(bits)
        if found is None:
            tops = np.empty(CHUNKS, dtype=np.int64)
            tails = np.empty(CHUNKS, dtype=np.int64)
            _split_query(self.words, bits, BIT_ORDER, CHUNK_STARTS, CHUNK_BITS, tops, tails)
            found = self._split[bits] = (tops, tails)
        return found


def words_from_hex(value: str) -> Vectors:
    """A 64-character hex hash as four 64-bit words, most significant first."""
    return np.frombuffer(bytes.fromhex(value), dtype=">u8").astype(np.uint64)


def vectors_from_hex(values: list[str]) -> Vectors:
    return (
        np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8").astype(np.uint64).reshape(-1, 4)
    )


def hex_from_words(words: Vectors) -> str:
    return np.asarray(words, dtype=">u8").tobytes().hex()


_NO_ROWS: Ints = np.empty(0, dtype=np.int64)


def _save(path: Path, array: npt.NDArray[Any]) -> None:
    with path.open("wb") as file:
        np.save(file, array, allow_pickle=False)


def _load(path: Path, dtype: type[np.generic], memory_map: bool) -> npt.NDArray[Any]:
    try:
        array = np.load(path, mmap_mode="r" if memory_map else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise SegmentFormatError(f"{path.name}: {error}") from error
    if array.dtype != np.dtype(dtype):
        raise SegmentFormatError(f"{path.name}: {array.dtype}, not {np.dtype(dtype)}")
    return cast(npt.NDArray[Any], array)
