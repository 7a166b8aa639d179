"""The PDQ index's saved form: a folder of ``.npy`` arrays and a JSON manifest, per base.

Not pickle: NumPy's array format holds nothing executable, and a read-only memory map of it lets
every process on a host share one copy of a ten-million-entry index. A base is written under a
temporary name, synced, then renamed into place, so a reader never sees half of one; the newest
bases are kept, older ones removed (processes still mapping a removed file keep it until they let
go, as POSIX does). The manifest holds each file's SHA-256 and the database's identity: a file
damaged on disk would make searches miss known images, and a base built from another database
would match its hashes, so either is rebuilt rather than trusted. Checking the digests reads the
files once (about half a second at ten million entries), which also brings them into memory
before the first upload.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vigil.matching import mih
from vigil.matching.banks import BankInfo
from vigil.matching.index import IndexPart, PdqIndex

log = logging.getLogger(__name__)

FORMAT = "vigil-pdq-index/1"
MANIFEST = "manifest.json"
KEEP = 2  # bases kept on disk: the newest, and the one before while processes move over
_LAYOUT = {
    "chunk_bits": mih.CHUNK_BITS.tolist(),
    "bit_order": "97k mod 256",
    "tail_bits": mih.TAIL_BITS,
    "smallest_tabled": mih.SMALLEST_TABLED,
}


@dataclass(frozen=True)
class SavedBase:
    folder: Path
    generation: int
    entries: int  # what the banks held at that generation (checked against the database)
    database: str  # the identity of the database it was built from
    manifest: dict[str, object]


class IndexFolder:
    """Where one database's saved PDQ bases live (``<data dir>/pdq-index``)."""

    def __init__(self, root: Path, *, memory_map: bool = True) -> None:
        self.root = root
        self.memory_map = memory_map

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One builder per host: processes starting together wait for the first one's base
        instead of each building their own."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def newest(self, at_most: int) -> SavedBase | None:
        """The newest readable base built at generation ``at_most`` or earlier."""
        bases = [base for base in self._bases() if base.generation <= at_most]
        return max(bases, key=lambda base: base.generation, default=None)

    def load(self, saved: SavedBase, banks: Sequence[BankInfo]) -> PdqIndex:
        """The saved base as an index; :class:`mih.SegmentFormatError` if its files are damaged."""
        _check_digests(saved)
        parts_field = saved.manifest.get("parts")
        if not isinstance(parts_field, list):
            raise mih.SegmentFormatError(f"{saved.folder.name}: no parts in the manifest")
        parts = []
        total = 0
        for described in parts_field:
            name, slot_banks, tabled = _part_fields(described)
            segment = mih.Segment.load(
                saved.folder, name, tabled=tabled, memory_map=self.memory_map
            )
            if int(segment.slots.max(initial=0)) >= max(len(slot_banks), 1):
                raise mih.SegmentFormatError(f"{name}: a slot names no bank")
            total += len(segment)
            parts.append(IndexPart(segment, slot_banks))
        if total != saved.entries:
            raise mih.SegmentFormatError(f"{saved.folder.name}: {total} rows, not {saved.entries}")
        return PdqIndex(banks, parts, saved.generation)

    def newer_than(self, generation: int) -> list[SavedBase]:
        return [base for base in self._bases() if base.generation > generation]

    def discard(self, saved: SavedBase) -> None:
        """Remove a base that must not be used (damaged, or not this database's)."""
        shutil.rmtree(saved.folder, ignore_errors=True)

    def save(self, index: PdqIndex, database: str) -> SavedBase:
        """Write ``index``'s base (it must have no changes on top), built from the database
        identified by ``database``, and prune older bases."""
        if index.pending:
            raise ValueError("only a compacted index is saved")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"g{index.base_generation:012d}-{secrets.token_hex(4)}"
        staging = self.root / f".{name}.tmp"
        staging.mkdir(mode=0o700)
        try:
            parts = []
            for number, part in enumerate(index.base):
                part.segment.save(staging, f"part{number}")
                parts.append(
                    {
                        "name": f"part{number}",
                        "rows": len(part.segment),
                        "tabled": part.segment.tables is not None,
                        "slot_banks": list(part.slot_banks),
                    }
                )
            manifest: dict[str, object] = {
                "format": FORMAT,
                "layout": _LAYOUT,
                "database": database,
                "generation": index.base_generation,
                "entries": len(index),
                "parts": parts,
                "files": {path.name: _digest(path) for path in sorted(staging.iterdir())},
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
            _sync_folder(staging)
            final = self.root / name
            staging.rename(final)
            _sync_path(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        saved = SavedBase(final, index.base_generation, len(index), database, manifest)
        self._prune(keep=saved)
        return saved

    def _bases(self) -> list[SavedBase]:
        if not self.root.is_dir():
            return []
        bases = []
        for folder in self.root.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                manifest = json.loads((folder / MANIFEST).read_text())
                if manifest.get("format") != FORMAT or manifest.get("layout") != _LAYOUT:
                    continue  # another version's layout: rebuilt rather than misread
                generation, entries = int(manifest["generation"]), int(manifest["entries"])
                database = str(manifest["database"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                log.warning("ignoring unreadable saved PDQ index %s", folder)
                continue
            bases.append(SavedBase(folder, generation, entries, database, manifest))
        return bases

    def _prune(self, keep: SavedBase) -> None:
        """Keep ``keep`` (just saved) and the newest others, up to KEEP bases."""
        others = [base for base in self._bases() if base.folder != keep.folder]
        others.sort(key=lambda base: base.generation, reverse=True)
        for old in others[KEEP - 1 :]:
            shutil.rmtree(old.folder, ignore_errors=True)
        for staging in self.root.glob(".*.tmp"):
            # Left by a process that died while saving; one still writing has renamed its own
            # folder within seconds, so only leftovers an hour old are removed.
            if _age_seconds(staging) > 3600:
                shutil.rmtree(staging, ignore_errors=True)


def _part_fields(described: object) -> tuple[str, tuple[int, ...], bool]:
    if not isinstance(described, dict):
        raise mih.SegmentFormatError("a part of the manifest is not an object")
    name, slot_banks, tabled = (
        described.get("name"),
        described.get("slot_banks"),
        described.get("tabled"),
    )
    if (
        not isinstance(name, str)
        or not name.isidentifier()
        or not isinstance(slot_banks, list)
        or not all(isinstance(bank, int) for bank in slot_banks)
        or not isinstance(tabled, bool)
    ):
        raise mih.SegmentFormatError(f"manifest part {described!r} is malformed")
    return name, tuple(slot_banks), tabled


def _digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _check_digests(saved: SavedBase) -> None:
    files = saved.manifest.get("files")
    if not isinstance(files, dict):
        raise mih.SegmentFormatError(f"{saved.folder.name}: the manifest lists no files")
    try:
        present = {path.name for path in saved.folder.iterdir()} - {MANIFEST}
    except OSError as error:
        raise mih.SegmentFormatError(f"{saved.folder.name}: {error}") from error
    if present != set(files):
        # Every file a load opens is one whose digest is checked, and none is missing.
        raise mih.SegmentFormatError(f"{saved.folder.name}: files differ from the manifest's")
    for name, expected in files.items():
        path = saved.folder / str(name)
        try:
            actual = _digest(path)
        except OSError as error:
            raise mih.SegmentFormatError(f"{saved.folder.name}/{name}: {error}") from error
        if actual != expected:
            raise mih.SegmentFormatError(f"{saved.folder.name}/{name}: its SHA-256 has changed")


def _sync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        _sync_path(path)
    _sync_path(folder)


def _sync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _age_seconds(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0
