"""The chain of custody: every action on evidence, in a log where each entry seals the last.

Entry *n* stores the hash of entry *n - 1* and a hash over its own content and that link, so
editing an entry breaks its own hash, deleting or reordering entries breaks the links or leaves a
gap in the numbering, and cutting entries off the end no longer matches the head row (and any
head a person noted down earlier, ``vigil evidence verify --expect-head``). Appending locks the
head row, so concurrent writers never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.store.models import CustodyEntry, CustodyHead

GENESIS_HASH = "0" * 64
_HEAD_ID = 1


class CustodyAction(StrEnum):
    STORED = "stored"  # the image entered the vault
    VIEWED = "viewed"  # someone read an item's details (never the image)
    EXPORTED = "exported"  # decrypted or packaged for an authority
    REPORTED = "reported"  # an authority received a report covering it
    HOLD_PLACED = "hold_placed"
    HOLD_RELEASED = "hold_released"
    REWRAPPED = "rewrapped"  # its key is now wrapped by another master key
    PURGED = "purged"  # retention ran out: the image and personal data are gone
    VERIFIED = "verified"  # a check of the whole chain (item None)


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    *,
    entry_id: int,
    previous_hash: str,
    item_id: str | None,
    action: str,
    actor: str,
    at: datetime,
    details: dict[str, Any],
) -> str:
    payload = {
        "id": entry_id,
        "previous": previous_hash,
        "item": item_id,
        "action": action,
        "actor": actor,
        "at": _timestamp(at),
        "details": details,
    }
    return hashlib.sha256(_canonical(payload)).hexdigest()


def append(
    session: Session,
    item_id: str | None,
    action: CustodyAction,
    actor: str,
    details: dict[str, Any],
    at: datetime,
) -> CustodyEntry:
    """Add an entry at the end of the chain (in the caller's transaction)."""
    head = session.scalar(select(CustodyHead).where(CustodyHead.id == _HEAD_ID).with_for_update())
    if head is None:
        head = CustodyHead(id=_HEAD_ID, last_id=0, last_hash=GENESIS_HASH)
        session.add(head)
    # JSON round trip: the hash covers exactly what the database will give back. Floats become
    # text, since PostgreSQL's JSONB may give one back in another form (1e16 as an integer).
    details = json.loads(json.dumps(details, default=str), parse_float=str)
    at = at.astimezone(UTC)
    entry_id = head.last_id + 1
    digest = entry_hash(
        entry_id=entry_id,
        previous_hash=head.last_hash,
        item_id=item_id,
        action=action.value,
        actor=actor,
        at=at,
        details=details,
    )
    entry = CustodyEntry(
        id=entry_id,
        item_id=item_id,
        action=action.value,
        actor=actor,
        at=at,
        details=details,
        previous_hash=head.last_hash,
        entry_hash=digest,
    )
    session.add(entry)
    head.last_id = entry_id
    head.last_hash = digest
    session.flush()
    return entry


def entries_for(session: Session, item_id: str) -> list[CustodyEntry]:
    return list(
        session.scalars(
            select(CustodyEntry).where(CustodyEntry.item_id == item_id).order_by(CustodyEntry.id)
        )
    )


def head(session: Session) -> tuple[int, str]:
    """(the last entry's number, its hash): note it down to check later nothing was cut off."""
    row = session.get(CustodyHead, _HEAD_ID)
    return (0, GENESIS_HASH) if row is None else (row.last_id, row.last_hash)


@dataclass(frozen=True)
class ChainProblem:
    entry_id: int | None
    item_id: str | None
    problem: str

    def __str__(self) -> str:
        where = f"entry {self.entry_id}" if self.entry_id is not None else "chain"
        item = f" (item {self.item_id})" if self.item_id else ""
        return f"{where}{item}: {self.problem}"


def check_chain(
    session: Session, *, batch: int = 1000, expect_head: tuple[int, str] | None = None
) -> Iterator[ChainProblem]:
    """Every break in the chain: edited, deleted, inserted or reordered entries, a cut end."""
    expected_id = 1
    previous = GENESIS_HASH
    last_id = 0
    seen: dict[int, str] = {}
    after = 0
    while True:
        rows = session.scalars(
            select(CustodyEntry)
            .where(CustodyEntry.id > after)
            .order_by(CustodyEntry.id)
            .limit(batch)
        ).all()
        if not rows:
            break
        for entry in rows:
            after = entry.id
            if entry.id != expected_id:
                yield ChainProblem(
                    entry.id,
                    entry.item_id,
                    f"entries {expected_id}-{entry.id - 1} are missing (deleted)",
                )
            if entry.previous_hash != previous:
                yield ChainProblem(
                    entry.id,
                    entry.item_id,
                    "does not follow the entry before it (entries deleted, inserted or reordered)",
                )
            recomputed = entry_hash(
                entry_id=entry.id,
                previous_hash=entry.previous_hash,
                item_id=entry.item_id,
                action=entry.action,
                actor=entry.actor,
                at=entry.at,
                details=entry.details,
            )
            if recomputed != entry.entry_hash:
                yield ChainProblem(entry.id, entry.item_id, "its content was edited")
            previous = entry.entry_hash
            expected_id = entry.id + 1
            last_id = entry.id
            if expect_head and entry.id == expect_head[0]:
                seen[entry.id] = entry.entry_hash
    stored_id, stored_hash = head(session)
    if stored_id != last_id:
        yield ChainProblem(
            None,
            None,
            f"the head row says the chain ends at entry {stored_id}, but it ends at {last_id} "
            "(entries cut off the end, or the head was altered)",
        )
    elif stored_hash != previous:
        yield ChainProblem(
            None, None, f"the head row's hash is not entry {last_id}'s: the head was altered"
        )
    if expect_head is not None:
        noted_id, noted_hash = expect_head
        if noted_id > last_id:
            yield ChainProblem(
                None, None, f"the chain ends at entry {last_id}, before the noted head {noted_id}"
            )
        elif noted_id > 0 and seen.get(noted_id) != noted_hash:
            yield ChainProblem(
                noted_id, None, "its hash differs from the head noted earlier: history rewritten"
            )
