"""Banks and their hashes in the database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import cast

from sqlalchemy import Table, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil.errors import Conflict, NotFound
from vigil.matching.banks import BankAction, BankInfo, Change
from vigil.signals.base import HashType
from vigil.store.models import Bank, BankGeneration, BankHash, BankHashRemoval
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


def bump_generation(session: Session) -> int:
    """Tell every process's index that banks changed; returns the new generation.

    Called *before* the change, in its transaction: the update locks the counter's row until
    commit, so bank changes commit in generation order, and an index that has seen generation G
    has seen every entry tagged G or lower (an entry's id gives no such promise on PostgreSQL,
    where ids are drawn before commit order is known).
    """
    return int(
        session.execute(
            update(BankGeneration)
            .where(BankGeneration.id == 1)
            .values(generation=BankGeneration.generation + 1)
            .returning(BankGeneration.generation)
        ).scalar_one()
    )


def database_identity(session: Session) -> str:
    """This database's identity (a UUID made when its schema was created)."""
    return str(session.scalar(select(BankGeneration.database_id).where(BankGeneration.id == 1)))


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
    generation = bump_generation(session)
    rows = [
        {"bank_id": bank.id, "value": value, "added_at": now, "generation": generation}
        for value in dict.fromkeys(values)
    ]
    added = _insert_new(session, rows)
    if added:
        # Incremented in SQL, not from the value read earlier: another import into this bank may
        # have committed since (PostgreSQL), and its additions must not be overwritten.
        bank.hash_count = Bank.hash_count + added
        bank.updated_at = now
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
    generation = bump_generation(session)
    # The delete itself says whether the row was there: a concurrent removal of the same hash
    # then finds nothing and fails, instead of counting the removal twice.
    added_generation = session.scalar(
        delete(BankHash)
        .where(BankHash.bank_id == bank.id, BankHash.value == value)
        .returning(BankHash.generation)
    )
    if added_generation is None:
        raise NotFound(f"bank {bank.name!r} does not hold {value}")
    session.execute(
        insert(BankHashRemoval).values(
            bank_id=bank.id,
            value=value,
            added_generation=added_generation,
            generation=generation,
            removed_at=utcnow(),
        )
    )
    # In SQL, for the same reason as in add_hashes.
    bank.hash_count = case((Bank.hash_count > 0, Bank.hash_count - 1), else_=0)
    bank.updated_at = utcnow()


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
    """(bank id, hash) of every entry of the banks of a perceptual hash type, enabled or not
    (an index holds them all, so switching a bank on needs no rebuild)."""
    result = session.execute(
        select(BankHash.bank_id, BankHash.value)
        .join(Bank, Bank.id == BankHash.bank_id)
        .where(Bank.hash_type == hash_type.value)
        .execution_options(yield_per=batch_size)
    )
    yield from result  # rows are tuples (Result.tuples() is deprecated since SQLAlchemy 2.1)


def perceptual_banks(session: Session, hash_type: HashType) -> list[BankInfo]:
    """Every bank of a perceptual hash type, enabled or not."""
    banks = session.scalars(select(Bank).where(Bank.hash_type == hash_type.value)).all()
    return [to_info(bank) for bank in banks]


def perceptual_changes(session: Session, hash_type: HashType, after: int, through: int) -> Change:
    """Entries added and removed in generations ``after`` < g <= ``through``."""
    of_type = Bank.hash_type == hash_type.value
    added = session.execute(
        select(BankHash.bank_id, BankHash.value)
        .join(Bank, Bank.id == BankHash.bank_id)
        .where(of_type, BankHash.generation > after, BankHash.generation <= through)
        .order_by(BankHash.generation, BankHash.id)
    ).all()
    removed = session.execute(
        select(BankHashRemoval.bank_id, BankHashRemoval.value, BankHashRemoval.added_generation)
        .join(Bank, Bank.id == BankHashRemoval.bank_id)
        .where(of_type, BankHashRemoval.generation > after, BankHashRemoval.generation <= through)
        .order_by(BankHashRemoval.generation, BankHashRemoval.id)
    ).all()
    return Change(
        added=[(bank_id, value) for bank_id, value in added],
        removed=[(bank_id, value, generation) for bank_id, value, generation in removed],
    )


def perceptual_entries_at(session: Session, hash_type: HashType, generation: int) -> int:
    """How many entries the banks of a perceptual type held at ``generation``. A saved index
    whose count differs was not built from this database.

    From the banks' running counts, less what was added since and plus what was removed since
    (both found through the generation indexes): no pass over millions of rows at start-up.
    """
    of_type = Bank.hash_type == hash_type.value
    now = session.scalar(select(func.coalesce(func.sum(Bank.hash_count), 0)).where(of_type))
    added_since = session.scalar(
        select(func.count())
        .select_from(BankHash)
        .join(Bank, Bank.id == BankHash.bank_id)
        .where(of_type, BankHash.generation > generation)
    )
    removed_since = session.scalar(
        select(func.count())
        .select_from(BankHashRemoval)
        .join(Bank, Bank.id == BankHashRemoval.bank_id)
        .where(
            of_type,
            BankHashRemoval.added_generation <= generation,
            BankHashRemoval.generation > generation,
        )
    )
    return int(now or 0) - int(added_since or 0) + int(removed_since or 0)
