"""``vigil evidence verify``: is every record and every image as it was when it was written?

Three things are checked against each other. The custody chain must be unbroken (see
:mod:`vigil.evidence.custody`). Each item row must still hold the facts its ``stored`` custody
entry fixed (hashes, uploader, circumstances): an edited row shows up here even though the row
itself carries no hash. Each sealed file must still hash to the ``ciphertext_sha256`` those facts
include, and with ``decrypt`` it must open and give back an image of the recorded SHA-256 (which
also proves its wrapped key was not altered).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.actions.images import ImageStore
from vigil.errors import EvidenceError
from vigil.evidence import custody
from vigil.evidence.custody import CustodyAction
from vigil.evidence.vault import Vault, stored_facts
from vigil.store.database import Database
from vigil.store.models import CustodyEntry, EvidenceItem

_BATCH = 500
# Purging clears the personal data a stored entry fixed (capture, EXIF) and keeps the hashes.
_CLEARED_BY_PURGE = frozenset({"capture_sha256", "exif_sha256"})
# What a `stored` entry may say beyond the item's facts (how the image came to the vault).
_NOTES = frozenset({"origin"})


@dataclass(frozen=True)
class VaultProblem:
    """Something that is not as it was recorded: a failure of the check."""

    item_id: str | None
    problem: str
    entry_id: int | None = None

    def __str__(self) -> str:
        where = [f"entry {self.entry_id}"] if self.entry_id is not None else []
        where += [f"item {self.item_id}"] if self.item_id is not None else []
        return f"{', '.join(where) or 'chain'}: {self.problem}"


@dataclass
class VaultReport:
    head: tuple[int, str]
    items_checked: int = 0
    decrypted: int = 0
    problems: list[VaultProblem] = field(default_factory=list)
    # Files in the vault folder no item refers to: a warning, not a failure.
    orphans: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@contextmanager
def snapshot_session(database: Database) -> Iterator[Session]:
    """A read transaction that sees one moment: entries appended while verify runs must not
    look like a head that no longer matches the chain. (SQLite's read transactions already do.)"""
    with database.session() as session:
        if database.dialect == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def verify_vault(
    session: Session,
    vault: Vault,
    *,
    expect_head: tuple[int, str] | None = None,
    decrypt: bool = False,
) -> VaultReport:
    """Check the custody chain, every item row against its ``stored`` entry, every sealed file
    against its recorded hash and, with ``decrypt``, that each image opens to its SHA-256."""
    report = VaultReport(head=custody.head(session))
    for chain_problem in custody.check_chain(session, expect_head=expect_head):
        report.problems.append(
            VaultProblem(chain_problem.item_id, chain_problem.problem, chain_problem.entry_id)
        )
    referenced: set[str] = set()
    after = ""
    while True:
        items = session.scalars(
            select(EvidenceItem)
            .where(EvidenceItem.id > after)
            .order_by(EvidenceItem.id)
            .limit(_BATCH)
        ).all()
        if not items:
            break
        after = items[-1].id
        entries = _key_entries(session, [item.id for item in items])
        for item in items:
            report.items_checked += 1
            if item.file_path is not None:
                referenced.add(item.file_path)
            report.problems.extend(_check_item(vault, item, entries.get(item.id, {}), decrypt))
            if decrypt and item.purged_at is None:
                report.decrypted += 1
            session.expunge(item)  # a large vault must not pile up in the identity map
    report.problems.extend(_entries_without_items(session))
    report.orphans = _orphans(vault.files, referenced)
    return report


def _key_entries(session: Session, item_ids: list[str]) -> dict[str, dict[str, list[CustodyEntry]]]:
    """Each item's ``stored`` and ``purged`` entries, by action."""
    found: dict[str, dict[str, list[CustodyEntry]]] = {}
    for entry in session.scalars(
        select(CustodyEntry)
        .where(
            CustodyEntry.item_id.in_(item_ids),
            CustodyEntry.action.in_([CustodyAction.STORED.value, CustodyAction.PURGED.value]),
        )
        .order_by(CustodyEntry.id)
    ):
        assert entry.item_id is not None
        found.setdefault(entry.item_id, {}).setdefault(entry.action, []).append(entry)
    return found


def _check_item(
    vault: Vault, item: EvidenceItem, entries: dict[str, list[CustodyEntry]], decrypt: bool
) -> Iterator[VaultProblem]:
    stored = entries.get(CustodyAction.STORED.value, [])
    purged_entries = entries.get(CustodyAction.PURGED.value, [])
    purged = item.purged_at is not None
    if not stored:
        yield VaultProblem(
            item.id,
            "has no `stored` custody entry: it did not enter through the vault, or its entry "
            "was deleted",
        )
    else:
        if len(stored) > 1:
            yield VaultProblem(item.id, f"has {len(stored)} `stored` custody entries, not one")
        changed = _changed_facts(stored[0].details, stored_facts(item), purged=purged)
        if changed:
            yield VaultProblem(
                item.id,
                f"its row no longer matches what its `stored` entry fixed ({', '.join(changed)}): "
                "the item was edited after it was stored",
                stored[0].id,
            )
    if purged:
        if not purged_entries:
            yield VaultProblem(item.id, "is marked purged but no `purged` custody entry says so")
        if item.wrapped_key is not None or item.file_path is not None:
            yield VaultProblem(item.id, "is marked purged but still has its key or its file")
        return
    if purged_entries:
        yield VaultProblem(
            item.id,
            f"the custody log says it was purged (entry {purged_entries[0].id}) but its row is "
            "not marked purged: the row was restored or edited",
            purged_entries[0].id,
        )
    if item.file_path is None or item.key_id is None or item.wrapped_key is None:
        yield VaultProblem(item.id, "is not purged but its file path or its key is missing")
        return
    try:
        blob = vault.files.read(item.file_path)
    except FileNotFoundError:
        yield VaultProblem(item.id, f"its sealed file {item.file_path} is missing")
        return
    except OSError as error:
        yield VaultProblem(item.id, f"its sealed file {item.file_path} cannot be read: {error}")
        return
    if hashlib.sha256(blob).hexdigest() != item.ciphertext_sha256:
        yield VaultProblem(
            item.id,
            f"its sealed file {item.file_path} differs from the one stored (SHA-256 mismatch): "
            "the image was changed or replaced",
        )
        return
    if decrypt:
        try:
            vault.open_image(item)
        except EvidenceError as error:
            yield VaultProblem(item.id, f"does not decrypt: {error.message}")


def _changed_facts(recorded: dict[str, Any], now: dict[str, Any], *, purged: bool) -> list[str]:
    # Round trip through JSON as the entry did, so equal values compare equal.
    names = sorted(set(now) | (set(recorded) - _NOTES))
    current = json.loads(json.dumps(now, default=str), parse_float=str)
    return [
        name
        for name in names
        if recorded.get(name) != current.get(name) and not (purged and name in _CLEARED_BY_PURGE)
    ]


def _entries_without_items(session: Session) -> Iterator[VaultProblem]:
    """``stored`` entries whose item row is gone: an item was deleted from the database."""
    orphaned = session.execute(
        select(CustodyEntry.id, CustodyEntry.item_id)
        .outerjoin(EvidenceItem, EvidenceItem.id == CustodyEntry.item_id)
        .where(CustodyEntry.action == CustodyAction.STORED.value, EvidenceItem.id.is_(None))
        .order_by(CustodyEntry.id)
    )
    for entry_id, item_id in orphaned:
        yield VaultProblem(
            item_id, "was stored (see its custody entry) but its row is gone: deleted", entry_id
        )


def _orphans(files: ImageStore, referenced: set[str]) -> list[str]:
    """Files under the vault folder no item refers to: left by a seal whose transaction rolled
    back, or by a purge that could not delete them (unreadable: their key is gone)."""
    root: Path = files.root
    if not root.is_dir():
        return []
    return sorted(
        relative
        for relative in (path.relative_to(root).as_posix() for path in root.rglob("*"))
        if (root / relative).is_file() and relative not in referenced
    )
