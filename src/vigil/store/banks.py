"""Banks and their hashes in the database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import cast

from sqlalchemy import Table, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil.errors import Conflict, NotFound
from vigil.matching.banks import BankAction, BankInfo
from vigil.signals.base import HashType
from vigil.store.models import Bank, BankGeneration, BankHash
from vigil.store.types import utcnow


def to_info(bank: Bank) -> BankInfo:
    return BankInfo(
        id=bank.id,
        name=bank.name,
        hash_type=HashType(bank.hash_type),
        action=BankAction(bank.action),
        threshold=bank.threshold,
        enabled=bank.enabled,
    )


def bump_generation(session: Session) -> None:
    """Tell every process's index that banks changed (in the same transaction as the change)."""
    session.execute(
        update(BankGeneration)
        .where(BankGeneration.id == 1)
        .values(generation=BankGeneration.generation + 1)
    )


def current_generation(session: Session) -> int:
    return int(session.scalar(select(BankGeneration.generation).where(BankGeneration.id == 1)) or 0)


def create_bank(
    session: Session,
    name: str,
    hash_type: HashType,
    action: BankAction,
    threshold: int,
    *,
    enabled: bool = True,
    description: str | None = None,
) -> Bank:
    if session.scalar(select(Bank.id).where(Bank.name == name)) is not None:
        raise Conflict(f"a bank named {name!r} exists already")
    bank = Bank(
        name=name,
        hash_type=hash_type.value,
        action=action.value,
        threshold=threshold,
        enabled=enabled,
        description=description,
        hash_count=0,
    )
    session.add(bank)
    session.flush()
    bump_generation(session)
    return bank


def get_bank(session: Session, name: str) -> Bank:
    bank = None if "\x00" in name else session.scalar(select(Bank).where(Bank.name == name))
    if bank is None:
        raise NotFound(f"no bank named {name!r}")
    return bank


def list_banks(session: Session) -> Sequence[Bank]:
    return session.scalars(select(Bank).order_by(Bank.name)).all()


def update_bank(
    session: Session,
    bank: Bank,
    *,
    action: BankAction | None = None,
    threshold: int | None = None,
    enabled: bool | None = None,
    description: str | None = None,
) -> Bank:
    if action is not None:
        bank.action = action.value
    if threshold is not None:
        bank.threshold = threshold
    if enabled is not None:
        bank.enabled = enabled
    if description is not None:
        bank.description = description
    bank.updated_at = utcnow()
    bump_generation(session)
    return bank


def add_hashes(session: Session, bank: Bank, values: Sequence[str]) -> int:
    """Insert normalised hash values, skipping ones the bank holds already; returns how many
    were new. Callers batch (thousands per call) so that huge lists stream."""
    if not values:
        return 0
    now = utcnow()
    rows = [
        {"bank_id": bank.id, "value": value, "added_at": now} for value in dict.fromkeys(values)
    ]
    added = _insert_new(session, rows)
    if added:
        # Incremented in SQL, not from the value read earlier: another import into this bank may
        # have committed since (PostgreSQL), and its additions must not be overwritten.
        bank.hash_count = Bank.hash_count + added
        bank.updated_at = now
        bump_generation(session)
    return added


def _insert_new(session: Session, rows: list[dict[str, object]]) -> int:
    """Insert the rows the bank lacks; returns how many that was.

    Core statements, not the ORM's bulk path (which cost as much as SQLite's own work). SQLite's
    executemany sums the rows affected, and ignored duplicates affect none; psycopg reports no
    count for a batch, so PostgreSQL returns the new ids (sent as multi-row VALUES).
    """
    table = cast(Table, BankHash.__table__)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing().returning(table.c.id)
        return len(connection.execute(statement, rows).all())
    return int(connection.execute(sqlite.insert(table).on_conflict_do_nothing(), rows).rowcount)


def remove_hash(session: Session, bank: Bank, value: str) -> None:
    # The delete itself says whether the row was there: a concurrent removal of the same hash
    # then finds nothing and fails, instead of counting the removal twice.
    removed = session.scalar(
        delete(BankHash)
        .where(BankHash.bank_id == bank.id, BankHash.value == value)
        .returning(BankHash.id)
    )
    if removed is None:
        raise NotFound(f"bank {bank.name!r} does not hold {value}")
    # In SQL, for the same reason as in add_hashes.
    bank.hash_count = case((Bank.hash_count > 0, Bank.hash_count - 1), else_=0)
    bank.updated_at = utcnow()
    bump_generation(session)


def find_exact(session: Session, digests: Mapping[HashType, str]) -> list[tuple[BankInfo, str]]:
    """Enabled banks holding one of these exact digests, with the digest each one holds."""
    if not digests:
        return []
    rows = session.execute(
        select(Bank, BankHash.value)
        .join(BankHash, BankHash.bank_id == Bank.id)
        .where(BankHash.value.in_(list(digests.values())), Bank.enabled.is_(True))
    ).all()
    found = []
    for bank, value in rows:
        # The same hex could in principle be a digest of another type; the bank's type decides.
        if digests.get(HashType(bank.hash_type)) == value:
            found.append((to_info(bank), value))
    return found


def iter_perceptual_entries(
    session: Session, hash_type: HashType, batch_size: int = 50_000
) -> Iterator[tuple[int, str]]:
    """(bank id, hash) of every entry of the enabled banks of a perceptual hash type."""
    result = session.execute(
        select(BankHash.bank_id, BankHash.value)
        .join(Bank, Bank.id == BankHash.bank_id)
        .where(Bank.hash_type == hash_type.value, Bank.enabled.is_(True))
        .execution_options(yield_per=batch_size)
    )
    yield from result  # rows are tuples (Result.tuples() is deprecated since SQLAlchemy 2.1)


def enabled_banks(session: Session, hash_type: HashType) -> list[BankInfo]:
    banks = session.scalars(
        select(Bank).where(Bank.hash_type == hash_type.value, Bank.enabled.is_(True))
    ).all()
    return [to_info(bank) for bank in banks]
