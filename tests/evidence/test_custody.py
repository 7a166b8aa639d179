"""``verify_vault`` notices each kind of tampering: with the custody log (edited, deleted,
reordered, cut or rewritten entries, an altered head), with an item row, with a sealed file and
with a wrapped key. The attacker here has the database owner's rights: each test first drops the
triggers that make the custody log append-only, as such an attacker could."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, text, update
from sqlalchemy.orm import Session

from tests.evidence.conftest import VaultSite
from vigil.evidence import custody
from vigil.evidence.crypto import MasterKey
from vigil.evidence.custody import CustodyAction
from vigil.evidence.verify import VaultReport, verify_vault
from vigil.store.models import CustodyEntry, CustodyHead, EvidenceItem
from vigil.store.types import utcnow


def _verify(
    site: VaultSite, *, expect_head: tuple[int, str] | None = None, decrypt: bool = False
) -> VaultReport:
    with site.runtime.database.session() as session:
        return verify_vault(session, site.runtime.vault, expect_head=expect_head, decrypt=decrypt)


def _problems(report: VaultReport) -> list[str]:
    return [str(problem) for problem in report.problems]


def _allow_tampering(session: Session) -> None:
    """Drop the append-only triggers, as someone with the database owner's rights could."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DROP TRIGGER custody_log_no_update"))
        session.execute(text("DROP TRIGGER custody_log_no_delete"))
    else:
        session.execute(text("DROP TRIGGER custody_log_append_only ON custody_log"))


def _three_items(site: VaultSite) -> list[EvidenceItem]:
    """Three items: custody entries 1, 2 and 3 are their ``stored`` entries."""
    return [site.preserve(seed, f"attacker-{seed}") for seed in (1, 2, 3)]


def _entry(session: Session, entry_id: int) -> CustodyEntry:
    entry = session.get(CustodyEntry, entry_id)
    assert entry is not None
    return entry


def test_an_untouched_vault_verifies_clean(vault_site: VaultSite) -> None:
    _three_items(vault_site)
    with vault_site.runtime.database.session() as session:
        noted = custody.head(session)

    report = _verify(vault_site, expect_head=noted, decrypt=True)

    assert _problems(report) == []
    assert report.ok
    assert (report.items_checked, report.decrypted) == (3, 3)
    assert report.head == noted
    assert report.orphans == []


def test_an_edited_entry_is_reported(vault_site: VaultSite) -> None:
    items = _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        _allow_tampering(session)
        stored = _entry(session, 2)
        edited = {**stored.details, "uploader_id": "innocent"}
        session.execute(update(CustodyEntry).where(CustodyEntry.id == 2).values(details=edited))

    assert _problems(_verify(vault_site)) == [
        f"entry 2, item {items[1].id}: its content was edited",
        # And the item no longer matches the edited entry.
        f"entry 2, item {items[1].id}: its row no longer matches what its `stored` entry fixed "
        "(uploader_id): the item was edited after it was stored",
    ]


def test_an_edited_actor_is_reported(vault_site: VaultSite) -> None:
    _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        _allow_tampering(session)
        session.execute(update(CustodyEntry).where(CustodyEntry.id == 2).values(actor="someone"))

    assert _edited_entries(_verify(vault_site)) == [2]


def test_an_edited_time_is_reported(vault_site: VaultSite) -> None:
    _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        _allow_tampering(session)
        moved = _entry(session, 1).at.replace(year=2025)
        session.execute(update(CustodyEntry).where(CustodyEntry.id == 1).values(at=moved))

    assert _edited_entries(_verify(vault_site)) == [1]


def _edited_entries(report: VaultReport) -> list[int | None]:
    return [p.entry_id for p in report.problems if p.problem == "its content was edited"]


def test_a_deleted_middle_entry_is_reported(vault_site: VaultSite) -> None:
    _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        _allow_tampering(session)
        session.execute(delete(CustodyEntry).where(CustodyEntry.id == 2))

    problems = _problems(_verify(vault_site))

    assert any(
        line.startswith("entry 3") and "entries 2-2 are missing (deleted)" in line
        for line in problems
    )
    assert any(
        line.startswith("entry 3") and "does not follow the entry before it" in line
        for line in problems
    )


def test_reordered_entries_are_reported(vault_site: VaultSite) -> None:
    _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        _allow_tampering(session)
        columns = ("item_id", "action", "actor", "at", "details", "previous_hash", "entry_hash")
        second, third = (
            {name: getattr(_entry(session, entry_id), name) for name in columns}
            for entry_id in (2, 3)
        )
        # Through a placeholder: entry_hash is unique.
        session.execute(update(CustodyEntry).where(CustodyEntry.id == 2).values(entry_hash="x"))
        session.execute(update(CustodyEntry).where(CustodyEntry.id == 3).values(**second))
        session.execute(update(CustodyEntry).where(CustodyEntry.id == 2).values(**third))

    report = _verify(vault_site)

    not_following = [p.entry_id for p in report.problems if "does not follow" in p.problem]
    assert 2 in not_following
    assert _edited_entries(report) == [2, 3]


def _view_last(site: VaultSite, item: EvidenceItem) -> None:
    """Entry 4: someone viewed an item (so cutting it removes no item's `stored` entry)."""
    with site.runtime.database.write_session() as session:
        custody.append(session, item.id, CustodyAction.VIEWED, "user:ann", {}, site.clock.now())


def test_entries_cut_off_the_end_are_reported(vault_site: VaultSite) -> None:
    items = _three_items(vault_site)
    _view_last(vault_site, items[0])
    with vault_site.runtime.database.write_session() as session:
        _allow_tampering(session)
        session.execute(delete(CustodyEntry).where(CustodyEntry.id == 4))

    assert _problems(_verify(vault_site)) == [
        "chain: the head row says the chain ends at entry 4, but it ends at 3 "
        "(entries cut off the end, or the head was altered)"
    ]


def test_an_altered_head_row_is_reported(vault_site: VaultSite) -> None:
    _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        session.execute(update(CustodyHead).values(last_hash="f" * 64))

    assert _problems(_verify(vault_site)) == [
        "chain: the head row's hash is not entry 3's: the head was altered"
    ]


def test_a_cut_end_with_a_matching_head_row_fails_against_the_noted_head(
    vault_site: VaultSite,
) -> None:
    items = _three_items(vault_site)
    _view_last(vault_site, items[0])
    with vault_site.runtime.database.write_session() as session:
        noted = custody.head(session)
        _allow_tampering(session)
        session.execute(delete(CustodyEntry).where(CustodyEntry.id == 4))
        third = _entry(session, 3)
        session.execute(update(CustodyHead).values(last_id=3, last_hash=third.entry_hash))

    assert _verify(vault_site).ok, "the cut is consistent: only the noted head shows it"
    assert _problems(_verify(vault_site, expect_head=noted)) == [
        "chain: the chain ends at entry 3, before the noted head 4"
    ]


def test_a_rewritten_history_fails_against_the_noted_head(vault_site: VaultSite) -> None:
    items = _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        noted = custody.head(session)
        _allow_tampering(session)
        # Edit entry 2, then recompute every hash after it and the head: a perfect rewrite.
        previous = _entry(session, 1).entry_hash
        for entry_id in (2, 3):
            entry = _entry(session, entry_id)
            details = (
                {**entry.details, "uploader_id": "innocent"} if entry_id == 2 else entry.details
            )
            digest = custody.entry_hash(
                entry_id=entry_id,
                previous_hash=previous,
                item_id=entry.item_id,
                action=entry.action,
                actor=entry.actor,
                at=entry.at,
                details=details,
            )
            session.execute(
                update(CustodyEntry)
                .where(CustodyEntry.id == entry_id)
                .values(details=details, previous_hash=previous, entry_hash=digest)
            )
            previous = digest
        session.execute(update(CustodyHead).values(last_id=3, last_hash=previous))

    unnoted = _problems(_verify(vault_site))
    noted_problems = _problems(_verify(vault_site, expect_head=noted))

    # The chain itself is consistent again; the item row no longer matches its rewritten entry.
    assert unnoted == [
        f"entry 2, item {items[1].id}: its row no longer matches what its `stored` entry fixed "
        "(uploader_id): the item was edited after it was stored"
    ]
    assert "entry 3: its hash differs from the head noted earlier: history rewritten" in (
        noted_problems
    )


def test_an_edited_item_row_is_reported(vault_site: VaultSite) -> None:
    items = _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        row = session.get(EvidenceItem, items[0].id)
        assert row is not None
        session.execute(
            update(EvidenceItem)
            .where(EvidenceItem.id == items[0].id)
            .values(uploader_id="someone-else", capture={**row.capture, "ip": "198.51.100.1"})
        )

    assert _problems(_verify(vault_site)) == [
        f"entry 1, item {items[0].id}: its row no longer matches what its `stored` entry fixed "
        "(capture_sha256, uploader_id): the item was edited after it was stored"
    ]


def test_an_item_without_a_stored_entry_is_reported(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1)
    with vault_site.runtime.database.write_session() as session:
        _allow_tampering(session)
        session.execute(delete(CustodyEntry).where(CustodyEntry.item_id == item.id))
        session.execute(update(CustodyHead).values(last_id=0, last_hash=custody.GENESIS_HASH))

    assert _problems(_verify(vault_site)) == [
        f"item {item.id}: has no `stored` custody entry: it did not enter through the vault, "
        "or its entry was deleted"
    ]


def test_a_deleted_item_row_is_reported(vault_site: VaultSite) -> None:
    items = _three_items(vault_site)
    with vault_site.runtime.database.write_session() as session:
        session.execute(delete(EvidenceItem).where(EvidenceItem.id == items[2].id))

    report = _verify(vault_site)

    assert _problems(report) == [
        f"entry 3, item {items[2].id}: was stored (see its custody entry) but its row is gone: "
        "deleted"
    ]
    assert report.orphans == [items[2].file_path], "its file is left without an item"


def test_an_item_marked_purged_without_a_purged_entry_is_reported(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1)
    with vault_site.runtime.database.write_session() as session:
        session.execute(
            update(EvidenceItem)
            .where(EvidenceItem.id == item.id)
            .values(purged_at=utcnow(), file_path=None, key_id=None, wrapped_key=None)
        )

    assert _problems(_verify(vault_site)) == [
        f"item {item.id}: is marked purged but no `purged` custody entry says so"
    ]


# --- the files: the database does not matter here ------------------------------------------------


def _vault_file(site: VaultSite, item: EvidenceItem) -> Path:
    assert item.file_path is not None
    return site.runtime.vault.files.root / item.file_path


def test_a_changed_image_file_is_reported(sqlite_vault_site: VaultSite) -> None:
    items = _three_items(sqlite_vault_site)
    path = _vault_file(sqlite_vault_site, items[1])
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))

    assert _problems(_verify(sqlite_vault_site)) == [
        f"item {items[1].id}: its sealed file {items[1].file_path} differs from the one stored "
        "(SHA-256 mismatch): the image was changed or replaced"
    ]


def test_a_missing_file_is_reported(sqlite_vault_site: VaultSite) -> None:
    items = _three_items(sqlite_vault_site)
    _vault_file(sqlite_vault_site, items[0]).unlink()

    assert _problems(_verify(sqlite_vault_site)) == [
        f"item {items[0].id}: its sealed file {items[0].file_path} is missing"
    ]


def test_an_altered_wrapped_key_is_reported_when_decrypting(sqlite_vault_site: VaultSite) -> None:
    items = _three_items(sqlite_vault_site)
    # A validly wrapped key, but of another item key: only opening the file can tell.
    key_id, other_wrapped = sqlite_vault_site.runtime.vault.keyring.wrap(b"\x07" * 32)
    with sqlite_vault_site.runtime.database.write_session() as session:
        session.execute(
            update(EvidenceItem)
            .where(EvidenceItem.id == items[2].id)
            .values(wrapped_key=other_wrapped)
        )

    assert _verify(sqlite_vault_site).ok, "the file and the row's stored facts are untouched"
    assert _problems(_verify(sqlite_vault_site, decrypt=True)) == [
        f"item {items[2].id}: does not decrypt: the file of item {items[2].id} fails its "
        "authentication tag: it was altered"
    ]
    assert key_id == items[2].key_id


def test_a_garbled_wrapped_key_is_reported_when_decrypting(sqlite_vault_site: VaultSite) -> None:
    item = sqlite_vault_site.preserve(1)
    with sqlite_vault_site.runtime.database.write_session() as session:
        session.execute(
            update(EvidenceItem).where(EvidenceItem.id == item.id).values(wrapped_key="AAAA" * 10)
        )

    assert _problems(_verify(sqlite_vault_site, decrypt=True)) == [
        f"item {item.id}: does not decrypt: the wrapped item key does not open with master key "
        f"{item.key_id}: it was altered"
    ]


def test_a_stray_file_is_an_orphan_not_a_failure(sqlite_vault_site: VaultSite) -> None:
    sqlite_vault_site.preserve(1)
    stray = sqlite_vault_site.runtime.vault.files.root / "ab" / "stray"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"not evidence")

    report = _verify(sqlite_vault_site)

    assert report.ok
    assert report.orphans == ["ab/stray"]


def test_an_item_whose_master_key_is_gone_is_reported_when_decrypting(
    sqlite_vault_site: VaultSite,
) -> None:
    item = sqlite_vault_site.preserve(1)
    unknown = MasterKey.generate().id
    with sqlite_vault_site.runtime.database.write_session() as session:
        session.execute(
            update(EvidenceItem).where(EvidenceItem.id == item.id).values(key_id=unknown)
        )

    assert _problems(_verify(sqlite_vault_site, decrypt=True)) == [
        f"item {item.id}: does not decrypt: the item key is wrapped by master key {unknown}, "
        "which is not configured (add its file to evidence.previous_key_files)"
    ]
