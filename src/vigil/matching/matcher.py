"""Search every enabled bank for an image's signals, and apply the allow-lists."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session

from vigil.config import MatchingSettings
from vigil.matching.banks import BankAction, Match
from vigil.matching.index import PdqIndex
from vigil.signals.base import HashType, Signals
from vigil.store import banks as bank_store
from vigil.store.database import Database


@dataclass(frozen=True)
class MatchReport:
    matches: tuple[Match, ...]  # block and hold matches that stand
    suppressed: tuple[tuple[Match, Match], ...]  # (match, the ignore-bank match suppressing it)

    @property
    def blocks(self) -> bool:
        """A block bank knows this image."""
        return any(match.action is BankAction.BLOCK for match in self.matches)


class Matcher:
    """Exact digests are looked up in the database (its index scales to any list size); PDQ
    hashes are searched in memory. The in-memory index is rebuilt whenever the banks'
    generation counter has moved, in this process or another."""

    def __init__(self, database: Database, settings: MatchingSettings) -> None:
        self._database = database
        self._settings = settings
        self._index = PdqIndex.empty()
        self._reload_lock = threading.Lock()

    @property
    def index(self) -> PdqIndex:
        return self._index

    def refresh(self) -> PdqIndex:
        """The index, rebuilt first if the banks changed since it was built."""
        with self._database.session() as session:
            generation = bank_store.current_generation(session)
        return self._index_at(generation)

    def _index_at(self, generation: int) -> PdqIndex:
        if generation == self._index.generation:
            return self._index
        with self._reload_lock:  # one rebuild at a time; the others wait for its result
            if self._index.generation != generation:
                self._index = self._load()
        return self._index

    def _load(self) -> PdqIndex:
        with self._database.session() as session:
            _consistent_snapshot(session)
            generation = bank_store.current_generation(session)
            banks = bank_store.enabled_banks(session, HashType.PDQ)
            entries = bank_store.iter_perceptual_entries(session, HashType.PDQ)
            return PdqIndex.build(banks, entries, generation)

    def match(self, signals: Signals) -> MatchReport:
        # One short transaction for both reads (a session costs more than these queries).
        with self._database.session() as session:
            generation = bank_store.current_generation(session)
            exact = bank_store.find_exact(session, signals.digests)
        index = self._index_at(generation)
        found = [
            Match(bank.name, bank.action, bank.hash_type, value, value, 0) for bank, value in exact
        ]
        for frame_hash in signals.frame_hashes:
            if frame_hash.quality < self._settings.pdq_quality_floor:
                continue  # featureless images (flat colours) would match unrelated entries
            for hit in index.search(frame_hash.value):
                found.append(
                    Match(
                        hit.bank.name,
                        hit.bank.action,
                        frame_hash.hash_type,
                        frame_hash.value,
                        hit.entry,
                        hit.distance,
                        frame_hash.frame,
                    )
                )
        return apply_allow_lists(found)


def apply_allow_lists(found: list[Match]) -> MatchReport:
    """An ignore-bank match suppresses block/hold matches *of the same hash*.

    Per hash, not per image: an allow-listed frame does not excuse another frame, and an MD5 on an
    allow-list (MD5 collisions can be made) does not excuse a SHA-256 or PDQ match.
    """
    allowing = {(m.hash_type, m.query): m for m in found if m.action is BankAction.IGNORE}
    standing: list[Match] = []
    suppressed: list[tuple[Match, Match]] = []
    for match in found:
        if match.action is BankAction.IGNORE:
            continue
        allowed_by = allowing.get((match.hash_type, match.query))
        if allowed_by is None:
            standing.append(match)
        else:
            suppressed.append((match, allowed_by))
    return MatchReport(tuple(standing), tuple(suppressed))


def _consistent_snapshot(session: Session) -> None:
    """Read the generation and the entries from one snapshot (SQLite's transactions are)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
