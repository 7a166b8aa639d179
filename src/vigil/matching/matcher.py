"""Search every enabled bank for an image's signals, and apply the allow-lists."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from vigil.config import MatchingSettings
from vigil.matching.banks import BankAction, BankInfo, Match
from vigil.matching.index import PdqIndex
from vigil.matching.mih import SegmentFormatError
from vigil.matching.saved import IndexFolder, SavedBase
from vigil.signals.base import HashType, Signals
from vigil.store import banks as bank_store
from vigil.store.database import Database

log = logging.getLogger(__name__)


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
    hashes are searched in memory.

    The PDQ index follows the banks' generation counter, moved by every bank change in this
    process or another: the first search opens the newest saved base (or builds one from the
    database and saves it), later ones apply just the entries added and removed since. When those
    changes pass ``matching.index_rebuild_after``, a background thread folds them into a new base
    and saves it; until it is done, searches go on against the old base plus the changes.
    """

    def __init__(
        self, database: Database, settings: MatchingSettings, index_folder: Path | None = None
    ) -> None:
        self._database = database
        self._settings = settings
        self._folder = (
            None
            if index_folder is None
            else IndexFolder(index_folder, memory_map=settings.index_memory_map)
        )
        self._index = PdqIndex.empty()
        self._reload_lock = threading.Lock()
        self._rebuild: threading.Thread | None = None

    @property
    def index(self) -> PdqIndex:
        return self._index

    def refresh(self) -> PdqIndex:
        """The index, brought up to date first if the banks changed since."""
        with self._database.session() as session:
            generation = bank_store.current_generation(session)
        return self._index_at(generation)

    def rebuild(self) -> PdqIndex:
        """Fold every change into a new base now (and save it), as the background thread does."""
        with self._reload_lock:
            snapshot = self._index
        if snapshot.generation < 0:
            return self.refresh()  # never opened: opening builds
        compacted = snapshot.compacted()
        if self._folder is not None:  # saved outside the lock: searches catch up meanwhile
            with self._database.session() as session:
                identity = bank_store.database_identity(session)
            try:
                with self._folder.lock():
                    self._folder.save(compacted, identity)
            except OSError:
                log.exception("the rebuilt PDQ index could not be saved; it serves from memory")
        with self._reload_lock:
            latest = self._index
            if latest.base is not snapshot.base or latest.generation < snapshot.generation:
                # Replaced meanwhile by an index opened afresh (the database was restored, say):
                # this rebuild is of a past that no longer holds.
                return latest
            with self._database.session() as session:
                change = bank_store.perceptual_changes(
                    session, HashType.PDQ, compacted.generation, latest.generation
                )
            self._index = compacted.with_changes(change, latest.banks, latest.generation)
            return self._index

    def wait_for_rebuild(self, timeout: float | None = None) -> None:
        """Block until a background rebuild, if one runs, has finished."""
        rebuild = self._rebuild
        if rebuild is not None:
            rebuild.join(timeout)

    def _index_at(self, generation: int) -> PdqIndex:
        if generation == self._index.generation:
            return self._index
        with self._reload_lock:  # one update at a time; the others wait for its result
            if self._index.generation != generation:
                self._index = self._catch_up()
                self._maybe_rebuild()
        return self._index

    def _catch_up(self) -> PdqIndex:
        current = self._index
        with self._database.session() as session:
            _consistent_snapshot(session)
            generation = bank_store.current_generation(session)
            banks = bank_store.perceptual_banks(session, HashType.PDQ)
            if 0 <= current.generation <= generation:
                change = bank_store.perceptual_changes(
                    session, HashType.PDQ, current.generation, generation
                )
                return current.with_changes(change, banks, generation)
            # Never opened, or the database went back in time (restored): start afresh.
            return self._open(session, generation, banks)

    def _open(self, session: Session, generation: int, banks: list[BankInfo]) -> PdqIndex:
        if self._folder is None:
            return _build(session, generation, banks)
        try:
            return self._open_saved(session, generation, banks)
        except OSError:
            # A full or read-only disk costs the saved form, never the screening.
            log.exception("the saved PDQ index cannot be used; building it in memory")
            return _build(session, generation, banks)

    def _open_saved(self, session: Session, generation: int, banks: list[BankInfo]) -> PdqIndex:
        assert self._folder is not None
        identity = bank_store.database_identity(session)
        with self._folder.lock():
            while (saved := self._folder.newest(at_most=generation)) is not None:
                reason = self._unusable(session, saved, identity)
                if reason is None:
                    try:
                        base = self._folder.load(saved, banks)
                    except SegmentFormatError as error:
                        reason = str(error)
                    else:
                        change = bank_store.perceptual_changes(
                            session, HashType.PDQ, saved.generation, generation
                        )
                        return base.with_changes(change, banks, generation)
                log.warning("discarding saved PDQ index %s: %s", saved.folder.name, reason)
                self._folder.discard(saved)
            for ahead in self._folder.newer_than(generation):
                # Saved for this database before it was restored to an earlier state, or for
                # another database: never right for this one.
                log.warning("discarding saved PDQ index %s: newer than the database", ahead.folder)
                self._folder.discard(ahead)
            index = _build(session, generation, banks)
            try:
                self._folder.save(index, identity)
            except OSError:
                log.exception("the PDQ index could not be saved; it serves from memory")
            return index

    @staticmethod
    def _unusable(session: Session, saved: SavedBase, identity: str) -> str | None:
        """Why a saved base cannot serve this database, or None."""
        if saved.database != identity:
            return "built from another database"
        held = bank_store.perceptual_entries_at(session, HashType.PDQ, saved.generation)
        if held != saved.entries:
            return f"it holds {saved.entries} entries, the database held {held} then"
        return None

    def _maybe_rebuild(self) -> None:
        """Start a background rebuild if the changes on top of the base have grown."""
        if self._index.pending <= self._settings.index_rebuild_after:
            return
        if self._rebuild is not None and self._rebuild.is_alive():
            return
        self._rebuild = threading.Thread(
            target=self._rebuild_in_background, name="vigil-pdq-rebuild", daemon=True
        )
        self._rebuild.start()

    def _rebuild_in_background(self) -> None:
        try:
            self.rebuild()
        except Exception:  # searches go on against the base plus changes
            log.exception("rebuilding the PDQ index failed; it will be tried again")

    def match(self, signals: Signals) -> MatchReport:
        # One short transaction for both reads (a session costs more than these queries).
        with self._database.session() as session:
            generation = bank_store.current_generation(session)
            exact = bank_store.find_exact(session, signals.digests)
        index = self._index_at(generation)
        found = [
            Match(bank.name, bank.action, bank.hash_type, value, value, 0) for bank, value in exact
        ]
        for frame_hash in signals.searched_hashes():
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
                        frame_hash.variant,
                    )
                )
        return apply_allow_lists(found)


def apply_allow_lists(found: list[Match]) -> MatchReport:
    """An ignore-bank match suppresses block/hold matches *of the same hash*.

    Per hash, not per image: an allow-listed frame does not excuse another frame, and an MD5 on an
    allow-list (MD5 collisions can be made) does not excuse a SHA-256 or PDQ match. A match of an
    edited copy of a frame (a mirror image, a crop: ``variant``) is excused too when the frame's
    own hash is allow-listed: the picture a site has declared harmless stays harmless mirrored.
    """
    ignoring = [m for m in found if m.action is BankAction.IGNORE]
    allowing = {(m.hash_type, m.query): m for m in ignoring}
    allowing_frames = {(m.hash_type, m.frame): m for m in ignoring if m.variant is None}
    standing: list[Match] = []
    suppressed: list[tuple[Match, Match]] = []
    for match in found:
        if match.action is BankAction.IGNORE:
            continue
        allowed_by = allowing.get((match.hash_type, match.query))
        if allowed_by is None and match.variant is not None:
            allowed_by = allowing_frames.get((match.hash_type, match.frame))
        if allowed_by is None:
            standing.append(match)
        else:
            suppressed.append((match, allowed_by))
    return MatchReport(tuple(standing), tuple(suppressed))


def _build(session: Session, generation: int, banks: list[BankInfo]) -> PdqIndex:
    entries = bank_store.iter_perceptual_entries(session, HashType.PDQ)
    return PdqIndex.build(banks, entries, generation)


def _consistent_snapshot(session: Session) -> None:
    """Read the generation and the entries from one snapshot (SQLite's transactions are)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
