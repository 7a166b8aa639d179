"""Upgrading: known illegal images an older Vigil kept in the clear are sealed into the vault."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.evidence.conftest import VaultSite, known_image, open_vault_site
from vigil.api import create_app
from vigil.evidence import custody
from vigil.evidence.vault import find_item_for_submission
from vigil.evidence.verify import verify_vault
from vigil.policy import TrustLevel, UploaderContext
from vigil.store.models import Submission


def _kept_in_the_clear(site: VaultSite, seed: int) -> tuple[str, str]:
    """A submission as an older Vigil left it: rejected as illegal, its image a plain file."""
    outcome = site.runtime.screening.screen(
        site.site,
        known_image(seed),
        UploaderContext(uploader_id="old-upload", trust_level=TrustLevel.NEW, port=4444),
        idempotency_key=None,
        actor="test",
    )
    with site.runtime.database.write_session() as session:
        submission = session.get_one(Submission, outcome.submission.id)
        assert submission.image_path is not None, "held: a plain copy for the moderators"
        submission.known_illegal = True
        submission.decision = "block"
        return submission.id, submission.image_path


def test_the_server_seals_plain_copies_left_by_an_older_version_at_start_up(
    tmp_path: Path, database_url: str | None
) -> None:
    vault_site = open_vault_site(
        tmp_path / "data", database_url, policy={"hold_new_uploaders": True}
    )
    try:
        _check_adoption(vault_site)
    finally:
        vault_site.runtime.close()


def _check_adoption(vault_site: VaultSite) -> None:
    submission_id, plain = _kept_in_the_clear(vault_site, 60)
    assert vault_site.runtime.images.exists(plain)

    with TestClient(create_app(vault_site.runtime)) as client:
        assert client.get("/healthz").status_code == 200

    assert not vault_site.runtime.images.exists(plain)
    with vault_site.runtime.database.session() as session:
        item = find_item_for_submission(session, submission_id)
        assert item is not None
        assert item.cause == "confirmed_illegal"
        assert item.capture["port"] == 4444
        assert session.get_one(Submission, submission_id).image_path is None
        [stored] = custody.entries_for(session, item.id)
        assert stored.details["origin"].startswith("adopted")
        assert verify_vault(session, vault_site.runtime.vault, decrypt=True).problems == []
    assert vault_site.runtime.vault.open_image(item) == known_image(60)
