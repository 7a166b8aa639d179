"""Master-key rotation re-wraps item keys and leaves the sealed files exactly as they were: after
it, the old key can leave the configuration and every item still opens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.evidence.conftest import VaultSite, known_image, open_vault_site
from vigil.errors import EvidenceIntegrityError, EvidenceKeyError
from vigil.evidence import custody
from vigil.evidence.crypto import MasterKey
from vigil.evidence.rotation import RotationResult, rotate_master_key
from vigil.evidence.vault import keys_in_use
from vigil.evidence.verify import verify_vault
from vigil.store.models import EvidenceItem


class Rotation:
    """A vault with items under an old key, reopened under other key configurations."""

    def __init__(self, first: VaultSite, tmp_path: Path) -> None:
        self.first = first
        self.data_dir = first.settings.data_dir
        self.database_url = first.settings.database_url
        self.old_key = self.data_dir / "evidence.key"  # made on first use
        self.new_key = tmp_path / "keys" / "new.key"
        MasterKey.generate().write(self.new_key)
        self._opened: list[VaultSite] = []

    def reopen(self, *, current: Path, previous: list[Path]) -> VaultSite:
        site = open_vault_site(
            self.data_dir,
            self.database_url,
            evidence={"master_key_file": current, "previous_key_files": previous},
        )
        site.clock.set(self.first.clock.now())
        self._opened.append(site)
        return site

    def close(self) -> None:
        for site in self._opened:
            site.runtime.close()


@pytest.fixture
def rotation(vault_site: VaultSite, tmp_path: Path) -> Iterator[Rotation]:
    opened = Rotation(vault_site, tmp_path)
    yield opened
    opened.close()


def _rotate(site: VaultSite, batch: int = 200) -> RotationResult:
    return rotate_master_key(
        site.runtime.database,
        site.runtime.vault,
        actor="cli:ann",
        now=site.clock.now(),
        batch=batch,
    )


def _items(site: VaultSite) -> list[EvidenceItem]:
    with site.runtime.database.session() as session:
        return list(session.scalars(select(EvidenceItem).order_by(EvidenceItem.id)))


def _blobs(site: VaultSite) -> dict[str, bytes]:
    vault = site.runtime.vault
    return {item.id: vault.read_blob(item) for item in _items(site)}


def test_after_rotation_the_old_key_can_go_and_every_item_still_opens(
    rotation: Rotation,
) -> None:
    items = [rotation.first.preserve(seed, f"attacker-{seed}") for seed in (1, 2, 3)]
    old_id = MasterKey.read(rotation.old_key).id
    new_id = MasterKey.read(rotation.new_key).id
    blobs_before = _blobs(rotation.first)

    both = rotation.reopen(current=rotation.new_key, previous=[rotation.old_key])
    result = _rotate(both, batch=2)  # two batches, two transactions

    assert result == RotationResult(rewrapped=3, already_current=0)
    assert _rotate(both) == RotationResult(rewrapped=0, already_current=3), "idempotent"
    only_new = rotation.reopen(current=rotation.new_key, previous=[])
    assert {item.key_id for item in _items(only_new)} == {new_id}
    assert _blobs(only_new) == blobs_before, "the sealed files are byte for byte the same"
    for seed, item in zip((1, 2, 3), items, strict=True):
        stored = next(row for row in _items(only_new) if row.id == item.id)
        assert only_new.runtime.vault.open_image(stored) == known_image(seed)
    with only_new.runtime.database.session() as session:
        assert keys_in_use(session) == {new_id: 3}
        report = verify_vault(session, only_new.runtime.vault, decrypt=True)
        rewraps = [
            entry.details
            for item in items
            for entry in custody.entries_for(session, item.id)
            if entry.action == "rewrapped"
        ]
    assert report.ok, report.problems
    assert report.decrypted == 3
    assert rewraps == [{"from_key": old_id, "to_key": new_id}] * 3


def test_before_rotation_an_item_does_not_open_without_the_old_key(rotation: Rotation) -> None:
    rotation.first.preserve(1)
    old_id = MasterKey.read(rotation.old_key).id

    only_new = rotation.reopen(current=rotation.new_key, previous=[])
    [item] = _items(only_new)

    with pytest.raises(EvidenceKeyError) as opening:
        only_new.runtime.vault.open_image(item)
    assert opening.value.message == (
        f"the item key is wrapped by master key {old_id}, which is not configured "
        "(add its file to evidence.previous_key_files)"
    )
    with pytest.raises(EvidenceKeyError) as rotating:
        _rotate(only_new)
    assert rotating.value.message == f"item {item.id}: {opening.value.message}"


def test_items_sealed_under_the_new_key_are_already_current(rotation: Rotation) -> None:
    rotation.first.preserve(1)
    both = rotation.reopen(current=rotation.new_key, previous=[rotation.old_key])
    fresh = both.preserve(2)

    assert fresh.key_id == MasterKey.read(rotation.new_key).id
    assert _rotate(both) == RotationResult(rewrapped=1, already_current=1)


def test_an_interrupted_rotation_keeps_its_finished_batches(rotation: Rotation) -> None:
    for seed in (1, 2, 3):
        rotation.first.preserve(seed)
    last = _items(rotation.first)[-1]
    with rotation.first.runtime.database.write_session() as session:
        session.execute(
            update(EvidenceItem).where(EvidenceItem.id == last.id).values(wrapped_key="AAAA" * 10)
        )
    both = rotation.reopen(current=rotation.new_key, previous=[rotation.old_key])

    with pytest.raises(EvidenceIntegrityError) as failure:
        _rotate(both, batch=1)

    assert failure.value.message.startswith(f"item {last.id}: the wrapped item key does not open")
    new_id = MasterKey.read(rotation.new_key).id
    assert [item.key_id == new_id for item in _items(both)] == [True, True, False]
