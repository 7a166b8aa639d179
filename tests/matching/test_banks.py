"""Creating and changing banks: names, thresholds, conflicts, and what each change records."""

from __future__ import annotations

import pytest

from tests.matching.conftest import ACTOR, MakeBank
from vigil.errors import BankError, Conflict, InvalidHash, InvalidName, NotFound
from vigil.matching import admin, importer
from vigil.matching.banks import BankAction, validate_bank_name, validate_threshold
from vigil.runtime import Runtime
from vigil.signals import HashType
from vigil.store import audit
from vigil.store import banks as bank_store

PDQ_VALUE = "c3" * 32


@pytest.mark.parametrize(
    "name", ["a", "A", "7", "ncmec-2024", "site.local_list", "x" * 100, "Z9._-z"]
)
def test_valid_bank_names_are_accepted(name: str) -> None:
    assert validate_bank_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 101,
        "-leading-dash",
        "_leading_underscore",
        ".hidden",
        "has space",
        "slash/inside",
        "../escape",
        "trailing-newline\n",
        "caf\u00e9",
        "semi;colon",
    ],
)
def test_invalid_bank_names_are_refused_saying_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidName, match="a bank name is 1-100 characters"):
        validate_bank_name(name)


@pytest.mark.parametrize("hash_type", [HashType.SHA256, HashType.MD5, HashType.SHA1])
def test_exact_banks_take_threshold_zero_only(hash_type: HashType) -> None:
    assert validate_threshold(hash_type, 0) == 0
    for threshold in (1, 31, -1):
        with pytest.raises(BankError, match="match exactly; their threshold is 0"):
            validate_threshold(hash_type, threshold)


def test_pdq_thresholds_run_from_0_to_128() -> None:
    assert [validate_threshold(HashType.PDQ, t) for t in (0, 31, 128)] == [0, 31, 128]
    for threshold in (-1, 129, 256):
        with pytest.raises(BankError, match="between 0 and 128"):
            validate_threshold(HashType.PDQ, threshold)


def test_new_bank_gets_the_configured_pdq_threshold_or_zero(
    runtime: Runtime, make_bank: MakeBank
) -> None:
    pdq = make_bank("p", HashType.PDQ, BankAction.BLOCK)
    sha = make_bank("s", HashType.SHA256, BankAction.BLOCK)

    assert pdq.threshold == runtime.settings.matching.pdq_threshold == 31
    assert sha.threshold == 0


def test_creating_a_bank_is_audited(runtime: Runtime, make_bank: MakeBank) -> None:
    make_bank("audited", HashType.PDQ, BankAction.HOLD, threshold=20)

    with runtime.database.session() as session:
        (event,) = audit.events_for(session, "audited")
    assert (event.action, event.actor) == ("bank.create", ACTOR)
    assert event.details == {
        "hash_type": "pdq",
        "action": "hold",
        "threshold": 20,
        "enabled": True,
    }


def test_invalid_bank_is_not_created(runtime: Runtime, make_bank: MakeBank) -> None:
    with pytest.raises(InvalidName):
        make_bank("bad name", HashType.PDQ, BankAction.BLOCK)
    with pytest.raises(BankError):
        make_bank("exact", HashType.MD5, BankAction.BLOCK, threshold=5)

    with runtime.database.session() as session:
        assert bank_store.list_banks(session) == []


def test_duplicate_bank_name_is_a_conflict(runtime: Runtime, make_bank: MakeBank) -> None:
    make_bank("twice", HashType.SHA256, BankAction.BLOCK)

    with pytest.raises(Conflict, match="'twice' exists already"):
        make_bank("twice", HashType.PDQ, BankAction.HOLD)

    with runtime.database.session() as session:
        assert [bank.hash_type for bank in bank_store.list_banks(session)] == ["sha256"]


def test_update_validates_the_threshold_for_the_banks_hash_type(
    runtime: Runtime, make_bank: MakeBank
) -> None:
    make_bank("exact", HashType.SHA1, BankAction.BLOCK)
    make_bank("pdq", HashType.PDQ, BankAction.BLOCK)

    with pytest.raises(BankError):
        admin.update_bank(runtime.database, "exact", threshold=3, actor=ACTOR)
    with pytest.raises(BankError):
        admin.update_bank(runtime.database, "pdq", threshold=129, actor=ACTOR)
    updated = admin.update_bank(runtime.database, "pdq", threshold=12, actor=ACTOR)

    assert updated.threshold == 12
    with runtime.database.session() as session:
        assert bank_store.get_bank(session, "exact").threshold == 0


def test_update_of_a_missing_bank_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFound):
        admin.update_bank(runtime.database, "ghost", enabled=False, actor=ACTOR)


def test_update_records_only_what_changed(runtime: Runtime, make_bank: MakeBank) -> None:
    make_bank("b", HashType.PDQ, BankAction.BLOCK)

    admin.update_bank(runtime.database, "b", action=BankAction.HOLD, enabled=False, actor=ACTOR)

    with runtime.database.session() as session:
        events = audit.events_for(session, "b")
        bank = bank_store.get_bank(session, "b")
    assert events[-1].action == "bank.update"
    assert events[-1].details == {"action": "hold", "enabled": False}
    assert (bank.action, bank.enabled, bank.threshold) == ("hold", False, 31)


def test_remove_hash_removes_it_and_counts_down(runtime: Runtime, make_bank: MakeBank) -> None:
    make_bank("r", HashType.PDQ, BankAction.BLOCK, [PDQ_VALUE, "3c" * 32])

    removed = admin.remove_hash(runtime.database, "r", PDQ_VALUE.upper(), actor=ACTOR)

    assert removed == PDQ_VALUE
    with runtime.database.session() as session:
        assert bank_store.get_bank(session, "r").hash_count == 1
        assert audit.events_for(session, "r")[-1].details == {"hash": PDQ_VALUE}
    # Gone for good: adding it back counts as new.
    report = importer.import_values(runtime.database, "r", [PDQ_VALUE], actor=ACTOR)
    assert report.added == 1


def test_remove_of_an_absent_hash_is_not_found_and_changes_nothing(
    runtime: Runtime, make_bank: MakeBank
) -> None:
    make_bank("r", HashType.PDQ, BankAction.BLOCK, [PDQ_VALUE])
    with runtime.database.session() as session:
        generation = bank_store.current_generation(session)

    with pytest.raises(NotFound, match="does not hold"):
        admin.remove_hash(runtime.database, "r", "00" * 32, actor=ACTOR)

    with runtime.database.session() as session:
        assert bank_store.get_bank(session, "r").hash_count == 1
        assert bank_store.current_generation(session) == generation
        assert audit.events_for(session, "r")[-1].action != "bank.remove_hash"


def test_removing_the_same_hash_twice_is_not_found_the_second_time(
    runtime: Runtime, make_bank: MakeBank
) -> None:
    make_bank("r", HashType.PDQ, BankAction.BLOCK, [PDQ_VALUE])
    admin.remove_hash(runtime.database, "r", PDQ_VALUE, actor=ACTOR)

    with pytest.raises(NotFound):
        admin.remove_hash(runtime.database, "r", PDQ_VALUE, actor=ACTOR)

    with runtime.database.session() as session:
        assert bank_store.get_bank(session, "r").hash_count == 0


def test_remove_hash_refuses_a_malformed_value(runtime: Runtime, make_bank: MakeBank) -> None:
    make_bank("r", HashType.SHA256, BankAction.BLOCK)

    with pytest.raises(InvalidHash):
        admin.remove_hash(runtime.database, "r", "abc", actor=ACTOR)


def test_remove_from_a_missing_bank_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFound, match="no bank named 'ghost'"):
        admin.remove_hash(runtime.database, "ghost", PDQ_VALUE, actor=ACTOR)


def test_every_bank_change_moves_the_generation(runtime: Runtime, make_bank: MakeBank) -> None:
    def generation() -> int:
        with runtime.database.session() as session:
            return bank_store.current_generation(session)

    seen = [generation()]
    make_bank("g", HashType.PDQ, BankAction.BLOCK)
    seen.append(generation())
    importer.import_values(runtime.database, "g", [PDQ_VALUE], actor=ACTOR)
    seen.append(generation())
    admin.update_bank(runtime.database, "g", threshold=10, actor=ACTOR)
    seen.append(generation())
    admin.remove_hash(runtime.database, "g", PDQ_VALUE, actor=ACTOR)
    seen.append(generation())
    # Adding nothing new is no change: indexes need not rebuild.
    importer.import_values(runtime.database, "g", [], actor=ACTOR)
    seen.append(generation())

    assert seen == sorted(seen)
    assert len(set(seen)) == 5
    assert seen[-1] == seen[-2]
