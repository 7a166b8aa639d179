"""What the matching tests share: the brute-force baseline every index must agree with, and
ways to make hashes at a known distance from others."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from vigil.config import IntakeSettings
from vigil.intake import open_image
from vigil.matching.banks import BankInfo
from vigil.matching.index import PdqIndex
from vigil.signals import Signals, compute_signals, default_hashers

PDQ_BITS = 256


def distance(a: str, b: str) -> int:
    """Hamming distance by counting the ones in the XOR's binary digits: plain Python, nothing
    shared with the code under test."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def flip_bits(value: str, count: int, rng: random.Random) -> str:
    """``value`` with exactly ``count`` of its 256 bits flipped."""
    number = int(value, 16)
    for bit in rng.sample(range(PDQ_BITS), count):
        number ^= 1 << bit
    return f"{number:064x}"


def random_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(PDQ_BITS):064x}"


def brute_force_search(
    banks: Sequence[BankInfo], entries: Sequence[tuple[int, str]], query: str
) -> Counter[tuple[str, str, int]]:
    """(bank name, entry, distance) of every entry within its bank's threshold, as a multiset."""
    by_id = {bank.id: bank for bank in banks}
    found: Counter[tuple[str, str, int]] = Counter()
    for bank_id, entry in entries:
        bank = by_id.get(bank_id)
        if bank is None:
            continue
        gap = distance(entry, query)
        if gap <= bank.threshold:
            found[(bank.name, entry, gap)] += 1
    return found


def assert_index_agrees_with_brute_force(
    banks: Sequence[BankInfo], entries: Sequence[tuple[int, str]], queries: Sequence[str]
) -> int:
    """Build an index and check every query against the baseline; returns how many hits were
    compared, so a caller can make sure the check was not vacuous."""
    index = PdqIndex.build(banks, entries, generation=1)
    compared = 0
    for query in queries:
        hits = index.search(query)
        found = Counter((hit.bank.name, hit.entry, hit.distance) for hit in hits)
        assert found == brute_force_search(banks, entries, query), f"query {query}"
        distances = [hit.distance for hit in hits]
        assert distances == sorted(distances), f"query {query}: not nearest first"
        compared += len(hits)
    return compared


def signals_of(data: bytes) -> Signals:
    """What screening computes for an uploaded file."""
    return compute_signals(open_image(data, IntakeSettings()), *default_hashers())
