"""What a bank is and what a match with it means, independent of how banks are stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from vigil.errors import BankError
from vigil.names import validate_name
from vigil.signals.base import HashType


class BankAction(StrEnum):
    BLOCK = "block"
    HOLD = "hold"
    # An allow-list: a match here suppresses block/hold matches of the same hash (for hashes
    # known to cause false positives).
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class BankInfo:
    id: int
    name: str
    hash_type: HashType
    action: BankAction
    threshold: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class Match:
    """One hash of the image found in one bank."""

    bank: str
    action: BankAction
    hash_type: HashType
    query: str  # the image's hash
    entry: str  # the bank's hash
    distance: int  # 0 for exact hashes
    frame: int | None = None  # which frame (perceptual hashes only)
    variant: str | None = None  # which transformed copy of the frame matched (None: as displayed)


@dataclass(frozen=True)
class Change:
    """Bank entries added and removed between two generations (removed ones with the
    generation they had been added in, which says whether an index built since holds them)."""

    added: Sequence[tuple[int, str]] = ()  # (bank id, hash)
    removed: Sequence[tuple[int, str, int]] = ()  # (bank id, hash, generation added)


def validate_bank_name(name: str) -> str:
    return validate_name("bank", name)


def validate_threshold(hash_type: HashType, threshold: int) -> int:
    if hash_type.is_exact:
        if threshold != 0:
            raise BankError(f"{hash_type} banks match exactly; their threshold is 0")
        return 0
    if not 0 <= threshold <= 128:
        raise BankError("a PDQ threshold is a Hamming distance between 0 and 128 (31 is usual)")
    return threshold
