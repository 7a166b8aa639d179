"""The PDQ index: every bank entry within its bank's threshold of a query, exactly.

A snapshot has three parts: the *base* (segments with multi-index tables, see ``mih``: built in
one go, saved to disk, memory-mapped), the entries *added* since the base was built (compared one
by one: a few thousand take microseconds) and the base rows *removed* since (left out of
results). A bank change therefore takes effect at once, without rebuilding the base;
``compacted`` folds the changes into a new base when they have grown (the matcher decides when).

It holds the entries of every PDQ bank, enabled or not, so switching a bank on or off, or changing
its threshold, only changes the limits a search applies.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vigil.matching import mih
from vigil.matching.banks import BankInfo, Change

SLOT_LIMIT = 1 << 16  # slots are uint16: banks per index part


@dataclass(frozen=True, slots=True)
class IndexHit:
    bank: BankInfo
    entry: str
    distance: int


@dataclass(frozen=True, eq=False)
class IndexPart:
    """A segment and the bank id behind each of its slots."""

    segment: mih.Segment
    slot_banks: tuple[int, ...]

    @classmethod
    def build(cls, vectors: mih.Vectors, bank_ids: npt.NDArray[np.int64]) -> IndexPart:
        slot_banks, slots = np.unique(bank_ids, return_inverse=True)
        if len(slot_banks) > SLOT_LIMIT:
            raise ValueError(f"an index part holds at most {SLOT_LIMIT} banks")
        segment = mih.Segment.build(vectors, slots.astype(np.uint16))
        return cls(segment, tuple(int(bank) for bank in slot_banks))

    def bank_ids(self) -> npt.NDArray[np.int64]:
        """The bank id of every row."""
        return np.array(self.slot_banks, dtype=np.int64)[self.segment.slots]


class PdqIndex:
    """Immutable: a change makes a new snapshot sharing the base's arrays, so a search in flight
    is never disturbed and needs no lock."""

    def __init__(
        self,
        banks: Sequence[BankInfo],
        base: Sequence[IndexPart],
        base_generation: int,
        *,
        added: Sequence[IndexPart] = (),
        removed: frozenset[tuple[int, int]] = frozenset(),
        generation: int | None = None,
    ) -> None:
        self.banks = tuple(banks)
        self.base = tuple(base)
        self.base_generation = base_generation
        self.added = tuple(added)  # more than one only past mih.MAX_ROWS entries
        self.removed = removed  # (base part, row)
        self.generation = base_generation if generation is None else generation
        by_id = {bank.id: bank for bank in self.banks}
        self._banks_by_id = by_id
        self._parts = self.base + self.added
        self._limits = [_limits(part, by_id) for part in self._parts]

    @classmethod
    def build(
        cls, banks: Sequence[BankInfo], entries: Iterable[tuple[int, str]], generation: int
    ) -> PdqIndex:
        """Index ``(bank id, hex hash)`` entries; entries of banks not listed are skipped."""
        known = {bank.id for bank in banks}
        raw = bytearray()
        bank_ids = array("q")
        for bank_id, value in entries:
            if bank_id in known:
                raw += bytes.fromhex(value)
                bank_ids.append(bank_id)
        vectors = np.frombuffer(bytes(raw), dtype=">u8").astype(np.uint64).reshape(-1, 4)
        return cls(banks, _build_parts(vectors, np.frombuffer(bank_ids, np.int64)), generation)

    @classmethod
    def empty(cls) -> PdqIndex:
        return cls([], [], -1)

    def __len__(self) -> int:
        return sum(len(part.segment) for part in self._parts) - len(self.removed)

    @property
    def nbytes(self) -> int:
        """Memory of the arrays (memory-mapped ones included, which processes share)."""
        return sum(part.segment.nbytes for part in self._parts)

    @property
    def pending(self) -> int:
        """Entries added or removed since the base was built."""
        return sum(len(part.segment) for part in self.added) + len(self.removed)

    def search(self, query: str) -> list[IndexHit]:
        """Every entry within its bank's threshold of ``query`` (hex), nearest first."""
        if not self._parts:
            return []
        prepared = mih.Query.from_hex(query)
        hits: list[IndexHit] = []
        for number, (part, limits) in enumerate(zip(self._parts, self._limits, strict=True)):
            rows, distances = part.segment.search(prepared, limits)
            in_base = number < len(self.base)
            for row, distance in zip(rows.tolist(), distances.tolist(), strict=True):
                if in_base and (number, row) in self.removed:
                    continue
                bank = self._banks_by_id[part.slot_banks[part.segment.slots[row]]]
                entry = mih.hex_from_words(part.segment.vectors[row])
                hits.append(IndexHit(bank, entry, distance))
        hits.sort(key=lambda hit: (hit.distance, hit.bank.name, hit.entry))
        return hits

    def with_changes(self, change: Change, banks: Sequence[BankInfo], generation: int) -> PdqIndex:
        """This index with ``change`` applied (removals first, so a hash removed and added back
        in the same span stays), under the current ``banks``."""
        if not change.added and not change.removed:
            return PdqIndex(
                banks,
                self.base,
                self.base_generation,
                added=self.added,
                removed=self.removed,
                generation=generation,
            )
        removed = set(self.removed)
        added_vectors, added_banks = self._added_arrays()
        keep = np.ones(len(added_banks), dtype=bool)
        since_base = [
            (bank_id, value)
            for bank_id, value, added_generation in change.removed
            if added_generation > self.base_generation
        ]
        for bank_id, value, added_generation in change.removed:
            if added_generation <= self.base_generation:
                removed.update(self._base_rows(bank_id, value))
        if since_base and len(added_banks):
            # One pass over the added entries, whatever the number of removals.
            position = {
                (int(bank), row.tobytes()): number
                for number, (bank, row) in enumerate(zip(added_banks, added_vectors, strict=True))
            }
            for bank_id, value in since_base:
                number = position.get((bank_id, mih.words_from_hex(value).tobytes()))
                if number is not None:
                    keep[number] = False
        known = {bank.id for bank in banks}
        new = [(bank_id, value) for bank_id, value in change.added if bank_id in known]
        vectors = np.concatenate(
            [added_vectors[keep], mih.vectors_from_hex([value for _, value in new])]
        )
        bank_ids = np.concatenate([added_banks[keep], np.array([b for b, _ in new], np.int64)])
        return PdqIndex(
            banks,
            self.base,
            self.base_generation,
            added=_build_parts(vectors, bank_ids),
            removed=frozenset(removed),
            generation=generation,
        )

    def compacted(self) -> PdqIndex:
        """The same entries in a new base, nothing added or removed on top (a full build)."""
        vectors: list[mih.Vectors] = []
        bank_ids: list[npt.NDArray[np.int64]] = []
        for number, part in enumerate(self._parts):
            keep = np.ones(len(part.segment), dtype=bool)
            if number < len(self.base):
                gone = [row for part_number, row in self.removed if part_number == number]
                keep[gone] = False
            vectors.append(np.asarray(part.segment.vectors)[keep])
            bank_ids.append(part.bank_ids()[keep])
        joined = np.concatenate(vectors) if vectors else np.empty((0, 4), np.uint64)
        banks = np.concatenate(bank_ids) if bank_ids else np.empty(0, np.int64)
        return PdqIndex(self.banks, _build_parts(joined, banks), self.generation)

    def with_banks(self, banks: Sequence[BankInfo], generation: int) -> PdqIndex:
        return self.with_changes(Change(), banks, generation)

    def _added_arrays(self) -> tuple[mih.Vectors, npt.NDArray[np.int64]]:
        if not self.added:
            return np.empty((0, 4), np.uint64), np.empty(0, np.int64)
        vectors = np.concatenate([np.asarray(part.segment.vectors) for part in self.added])
        return vectors, np.concatenate([part.bank_ids() for part in self.added])

    def _base_rows(self, bank_id: int, value: str) -> list[tuple[int, int]]:
        """Where the base holds ``value`` for this bank (at most one row per part)."""
        query = mih.Query.from_hex(value)
        found: list[tuple[int, int]] = []
        for number, part in enumerate(self.base):
            if bank_id not in part.slot_banks:
                continue
            limits = np.full(len(part.slot_banks), -1, dtype=np.int16)
            limits[part.slot_banks.index(bank_id)] = 0
            rows, _ = part.segment.search(query, limits)
            found.extend((number, int(row)) for row in rows)
        return found


def _build_parts(vectors: mih.Vectors, bank_ids: npt.NDArray[np.int64]) -> list[IndexPart]:
    return [
        IndexPart.build(
            vectors[start : start + mih.MAX_ROWS], bank_ids[start : start + mih.MAX_ROWS]
        )
        for start in range(0, len(bank_ids), mih.MAX_ROWS)
    ]


def _limits(part: IndexPart, banks: Mapping[int, BankInfo]) -> npt.NDArray[np.int16]:
    """Each slot's match distance: its bank's threshold, or −1 if disabled or gone."""
    limits = np.full(len(part.slot_banks), -1, dtype=np.int16)
    for slot, bank_id in enumerate(part.slot_banks):
        bank = banks.get(bank_id)
        if bank is not None and bank.enabled:
            limits[slot] = bank.threshold
    return limits


def hamming_distance(a: str, b: str) -> int:
    """Bits that differ between two hex hashes of equal length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
