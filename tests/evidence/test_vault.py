"""The vault seals a known illegal image at the moment it is blocked, with its circumstances."""

from __future__ import annotations

import hashlib

from tests.evidence.conftest import VaultSite, known_image
from vigil.evidence import custody


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
