"""Master-key rotation: every item key re-wrapped by the current master key, images untouched.

To rotate: make a new key (``vigil evidence new-key``), configure it as the master key and the
old one under ``evidence.previous_key_files``, run ``vigil evidence rotate-key``, then remove the
old key from the configuration (and, once backups that need it have expired, destroy it).

Each batch is a transaction of its own, so an interrupted rotation keeps what it did and the next
run carries on; items already wrapped by the current key are never touched twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from vigil.errors import EvidenceError, EvidenceIntegrityError, EvidenceKeyError
from vigil.evidence import custody
from vigil.evidence.custody import CustodyAction
from vigil.evidence.vault import Vault, keys_in_use
from vigil.store import audit
from vigil.store.database import Database
from vigil.store.models import EvidenceItem


@dataclass(frozen=True)
class RotationResult:
    rewrapped: int
    already_current: int


def rotate_master_key(
    database: Database, vault: Vault, *, actor: str, now: datetime, batch: int = 200
) -> RotationResult:
    """Re-wrap every unpurged item key that the current master key does not wrap yet."""
    current = vault.keyring.current.id
    with database.session() as session:
        already_current = keys_in_use(session).get(current, 0)
    rewrapped = 0
    while True:
        with database.write_session() as session:
            items = list(
                session.scalars(
                    select(EvidenceItem)
                    .where(
                        EvidenceItem.purged_at.is_(None),
                        EvidenceItem.key_id.is_not(None),
                        EvidenceItem.key_id != current,
                    )
                    .order_by(EvidenceItem.id)
                    .limit(batch)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
            )
            if not items:
                break
            moved: dict[str, int] = {}
            for item in items:
                old_key_id = item.key_id
                assert old_key_id is not None  # by the query
                assert item.wrapped_key is not None
                item.key_id, item.wrapped_key = _rewrap(
                    vault, item.id, old_key_id, item.wrapped_key
                )
                custody.append(
                    session,
                    item.id,
                    CustodyAction.REWRAPPED,
                    actor,
                    {"from_key": old_key_id, "to_key": current},
                    now,
                )
                moved[old_key_id] = moved.get(old_key_id, 0) + 1
            audit.append(
                session,
                actor,
                "evidence.rewrapped",
                None,
                {"to_key": current, "from_keys": moved, "items": [item.id for item in items]},
                at=now,
            )
            rewrapped += len(items)
    return RotationResult(rewrapped=rewrapped, already_current=already_current)


def _rewrap(vault: Vault, item_id: str, key_id: str, wrapped: str) -> tuple[str, str]:
    try:
        return vault.keyring.rewrap(key_id, wrapped)
    except EvidenceKeyError as error:
        raise EvidenceKeyError(f"item {item_id}: {error.message}") from error
    except EvidenceError as error:
        raise EvidenceIntegrityError(f"item {item_id}: {error.message}") from error
