"""The vault seals a known illegal image at the moment it is blocked, with its circumstances."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from tests.evidence.conftest import VaultSite, known_image, open_vault_site
from tests.images import encode, make_photo
from vigil.api import create_app
from vigil.errors import EvidenceIntegrityError, EvidenceKeyError, ScreeningUnavailable
from vigil.evidence import custody
from vigil.evidence.crypto import MasterKey
from vigil.evidence.verify import verify_vault
from vigil.policy import UploaderContext
from vigil.runtime import Runtime
from vigil.store.models import EvidenceItem, Submission


def test_a_blocked_known_image_is_sealed_with_its_circumstances(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1, "attacker-1")

    blob = vault_site.runtime.vault.read_blob(item)
    original = known_image(1)
    assert original not in blob
    assert hashlib.sha256(blob).hexdigest() == item.ciphertext_sha256
    assert vault_site.runtime.vault.open_image(item) == original
    assert (item.sha256, item.md5) == (
        hashlib.sha256(original).hexdigest(),
        hashlib.md5(original).hexdigest(),
    )
    assert (item.capture["ip"], item.capture["port"]) == ("203.0.113.7", 51234)
    assert item.capture["user_agent"] == "Mozilla/5.0 (stand-in)"
    assert item.capture["account"]["email"] == "attacker-1@example.test"
    assert item.exif["Image.Make"] == "Stand-in Camera Co"
    assert item.matches[0]["bank"] == "known-illegal"
    with vault_site.runtime.database.session() as session:
        entries = custody.entries_for(session, item.id)
        assert [entry.action for entry in entries] == ["stored"]
        assert list(custody.check_chain(session)) == []


def test_without_its_master_key_a_known_image_gets_a_503_and_others_are_still_screened(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "evidence.key"
    site = open_vault_site(tmp_path / "data", None, evidence={"master_key_file": str(missing)})
    try:
        with pytest.raises(ScreeningUnavailable, match="evidence vault"):
            site.preserve(5)
        unrelated = site.runtime.screening.screen(
            site.site,
            known_image(6),
            UploaderContext(uploader_id="member"),
            idempotency_key=None,
            actor="test",
        )
        assert unrelated.submission.decision == "allow"
        with site.runtime.database.session() as session:
            assert session.scalar(select(func.count()).select_from(EvidenceItem)) == 0
            # Nothing about the refused upload was recorded: the site retries it.
            assert session.scalar(select(func.count()).select_from(Submission)) == 1
    finally:
        site.runtime.close()


def test_a_key_file_that_holds_no_key_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "evidence.key"
    bad.write_text("not a key\n")
    site = open_vault_site(tmp_path / "data", None, evidence={"master_key_file": str(bad)})
    try:
        with pytest.raises(ScreeningUnavailable, match="does not hold a master key"):
            site.preserve(7)
    finally:
        site.runtime.close()


def test_the_default_master_key_is_made_once_and_readable_by_its_owner_only(
    sqlite_vault_site: VaultSite,
) -> None:
    sqlite_vault_site.preserve(8)
    key_file = sqlite_vault_site.settings.data_dir / "evidence.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_text()
    sqlite_vault_site.preserve(9)
    assert key_file.read_text() == first


def test_a_sealed_file_renamed_to_another_item_does_not_open(sqlite_vault_site: VaultSite) -> None:
    first = sqlite_vault_site.preserve(10)
    second = sqlite_vault_site.preserve(11)
    vault = sqlite_vault_site.runtime.vault
    assert first.file_path is not None
    assert second.file_path is not None
    (vault.files.root / second.file_path).write_bytes(vault.read_blob(first))
    with pytest.raises(EvidenceIntegrityError, match="authentication tag"):
        vault.open_image(second)


def test_readiness_fails_while_the_vault_has_no_master_key(tmp_path: Path) -> None:
    missing = tmp_path / "keys" / "evidence.key"
    site = open_vault_site(tmp_path / "data", None, evidence={"master_key_file": str(missing)})
    try:
        with TestClient(create_app(site.runtime)) as client:
            down = client.get("/readyz")
            MasterKey.generate().write(missing)
            up = client.get("/readyz")
    finally:
        site.runtime.close()
    assert down.status_code == 503
    assert "evidence vault" in down.text
    assert up.status_code == 200
    assert up.json()["evidence_vault"]["master_key_id"] == MasterKey.read(missing).id


def test_exif_numbers_a_database_rewrites_still_verify_clean(vault_site: VaultSite) -> None:
    """PostgreSQL's JSONB gives 1e16 back as an integer and -0.0 as 0: kept as text, the digest
    the custody chain fixed at storage still matches what the database returns."""
    picture = make_photo(320, 240, seed=40)
    tags = Image.Exif()
    tags[0x010F] = "Stand-in Camera Co"
    tags[0xC000] = 1e16  # a private tag: Pillow writes a float as a DOUBLE
    tags[0xC001] = -0.0
    data = encode(picture, "JPEG", quality=90, exif=tags.tobytes())
    item = vault_site.preserve_bytes(data, "float-uploader")

    assert item.exif["Image.0xc000"] == "1e+16"
    with vault_site.runtime.database.session() as session:
        report = verify_vault(session, vault_site.runtime.vault, decrypt=True)
    assert report.problems == []


def test_a_missing_default_key_file_is_never_replaced_while_items_need_it(
    sqlite_vault_site: VaultSite,
) -> None:
    item = sqlite_vault_site.preserve(41)
    key_file = sqlite_vault_site.settings.data_dir / "evidence.key"
    key_file.unlink()

    reopened = Runtime.open(sqlite_vault_site.settings, clock=sqlite_vault_site.clock)
    try:
        with pytest.raises(EvidenceKeyError, match="restore the file from its backup"):
            reopened.vault.open_image(item)
        assert not key_file.exists()
    finally:
        reopened.close()
