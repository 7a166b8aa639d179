"""An in-memory PDQ index: every bank entry within each bank's threshold, by brute force.

256-bit hashes are kept as four columns of 64-bit words; a search XORs each column with the
query's word and adds the population counts (NumPy, no Python loop per entry). Column by column
keeps every pass over contiguous memory, which measured about 9x faster than summing across rows.
Correct by construction, and the baseline any faster index must agree with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vigil.matching.banks import BankInfo

_WORDS = 4  # 256 bits


@dataclass(frozen=True, slots=True)
class IndexHit:
    bank: BankInfo
    entry: str
    distance: int


class PdqIndex:
    """Immutable once built; a changed bank list builds a new index that replaces the old one."""

    def __init__(
        self,
        banks: Sequence[BankInfo],
        vectors: npt.NDArray[np.uint64],
        bank_rows: npt.NDArray[np.int32],
        generation: int,
    ) -> None:
        self._banks = list(banks)
        self._columns = [np.ascontiguousarray(vectors[:, word]) for word in range(_WORDS)]
        self._bank_rows = bank_rows
        thresholds = np.array([bank.threshold for bank in self._banks], dtype=np.uint16)
        self._row_thresholds = thresholds[bank_rows] if len(thresholds) else np.empty(0, np.uint16)
        self.generation = generation

    @classmethod
    def build(
        cls, banks: Sequence[BankInfo], entries: Iterable[tuple[int, str]], generation: int
    ) -> PdqIndex:
        """Index ``(bank id, hex hash)`` entries; entries of banks not listed are skipped."""
        position = {bank.id: row for row, bank in enumerate(banks)}
        raw = bytearray()
        bank_rows: list[int] = []
        for bank_id, value in entries:
            row = position.get(bank_id)
            if row is not None:
                raw += bytes.fromhex(value)
                bank_rows.append(row)
        vectors = np.frombuffer(bytes(raw), dtype=">u8").astype(np.uint64).reshape(-1, _WORDS)
        return cls(banks, vectors, np.array(bank_rows, dtype=np.int32), generation)

    @classmethod
    def empty(cls) -> PdqIndex:
        return cls([], np.empty((0, _WORDS), dtype=np.uint64), np.empty(0, dtype=np.int32), -1)

    def __len__(self) -> int:
        return int(self._bank_rows.shape[0])

    def search(self, query: str) -> list[IndexHit]:
        """Every entry within its bank's threshold of ``query`` (hex), nearest first."""
        if not len(self):
            return []
        words = np.frombuffer(bytes.fromhex(query), dtype=">u8").astype(np.uint64)
        # uint16: a distance can reach 256, which uint8 would wrap to 0.
        distances = np.bitwise_count(self._columns[0] ^ words[0]).astype(np.uint16)
        for column, word in zip(self._columns[1:], words[1:], strict=True):
            distances += np.bitwise_count(column ^ word)
        rows = np.flatnonzero(distances <= self._row_thresholds)
        rows = rows[np.argsort(distances[rows], kind="stable")]
        return [
            IndexHit(
                bank=self._banks[self._bank_rows[row]],
                entry=self._entry(int(row)),
                distance=int(distances[row]),
            )
            for row in rows
        ]

    def _entry(self, row: int) -> str:
        words = np.array([column[row] for column in self._columns], dtype=">u8")
        return words.tobytes().hex()


def hamming_distance(a: str, b: str) -> int:
    """Bits that differ between two hex hashes of equal length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
