"""Changing banks: the one implementation behind both the API and the command line."""

from __future__ import annotations

from vigil.config import MatchingSettings
from vigil.matching.banks import BankAction, validate_bank_name, validate_threshold
from vigil.signals.base import HashType, normalize_hash
from vigil.store import audit
from vigil.store import banks as bank_store
from vigil.store.database import Database
from vigil.store.models import Bank


def create_bank(
    database: Database,
    settings: MatchingSettings,
    *,
    name: str,
    hash_type: HashType,
    action: BankAction,
    threshold: int | None,
    enabled: bool,
    description: str | None,
    actor: str,
) -> Bank:
    validate_bank_name(name)
    if threshold is None:
        threshold = settings.pdq_threshold if hash_type is HashType.PDQ else 0
    threshold = validate_threshold(hash_type, threshold)
    with database.write_session() as session:
        bank = bank_store.create_bank(
            session, name, hash_type, action, threshold, enabled=enabled, description=description
        )
        audit.append(
            session,
            actor,
            "bank.create",
            name,
            {
                "hash_type": hash_type.value,
                "action": action.value,
                "threshold": threshold,
                "enabled": enabled,
            },
        )
        return bank


def update_bank(
    database: Database,
    name: str,
    *,
    action: BankAction | None = None,
    threshold: int | None = None,
    enabled: bool | None = None,
    description: str | None = None,
    actor: str,
) -> Bank:
    with database.write_session() as session:
        bank = bank_store.get_bank(session, name)
        if threshold is not None:
            threshold = validate_threshold(HashType(bank.hash_type), threshold)
        bank_store.update_bank(
            session,
            bank,
            action=action,
            threshold=threshold,
            enabled=enabled,
            description=description,
        )
        changes = {
            "action": action,
            "threshold": threshold,
            "enabled": enabled,
            "description": description,
        }
        audit.append(
            session, actor, "bank.update", name, {k: v for k, v in changes.items() if v is not None}
        )
        return bank


def remove_hash(database: Database, name: str, value: str, *, actor: str) -> str:
    with database.write_session() as session:
        bank = bank_store.get_bank(session, name)
        normalised = normalize_hash(HashType(bank.hash_type), value)
        bank_store.remove_hash(session, bank, normalised)
        audit.append(session, actor, "bank.remove_hash", name, {"hash": normalised})
    return normalised
