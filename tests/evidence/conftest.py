"""Evidence tests: a real runtime (SQLite, and PostgreSQL where a test asks for ``vault_site``)
whose clock the test moves, and images made illegal for the test by putting their hash in a
block bank ("known illegal" here is always a generated stand-in picture)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import Result

from tests import test_cli
from tests.images import encode, make_photo
from vigil.clock import ManualClock
from vigil.config import Settings, load_settings
from vigil.evidence.vault import find_item_for_submission
from vigil.matching.banks import BankAction
from vigil.policy import TrustLevel, UploaderContext
from vigil.runtime import Runtime
from vigil.signals.base import HashType
from vigil.store import banks as bank_store
from vigil.store.models import Bank, EvidenceItem
from vigil.store.sites import SiteRef, get_or_create_site

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SITE_NAME = "parents-forum"
KNOWN_BANK = "known-illegal"
# A terminal wide enough that printed tables keep each row on one line.
WIDE = {"COLUMNS": "250"}


def known_image(seed: int, *, exif: bool = True) -> bytes:
    """A generated JPEG (a stand-in, never real abuse imagery), with camera EXIF if asked."""
    picture: Image.Image = make_photo(320, 240, seed=seed)
    if not exif:
        return encode(picture, "JPEG", quality=90)
    tags = Image.Exif()
    tags[0x010F] = "Stand-in Camera Co"  # Make
    tags[0x0110] = f"Model {seed}"  # Model
    tags[0x0132] = "2026:03:01 21:14:05"  # DateTime
    return encode(picture, "JPEG", quality=90, exif=tags.tobytes())


@dataclass
class VaultSite:
    """One site on a runtime with a manual clock, and a block bank the test fills."""

    runtime: Runtime
    clock: ManualClock
    site: SiteRef

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def preserve(
        self,
        seed: int,
        uploader: str | None = "attacker-1",
        **context: Any,
    ) -> EvidenceItem:
        """Make ``known_image(seed)`` known illegal, upload it, and return the vault item."""
        return self.preserve_bytes(known_image(seed), uploader, **context)

    def preserve_bytes(
        self, data: bytes, uploader: str | None = "attacker-1", **context: Any
    ) -> EvidenceItem:
        """Make ``data`` known illegal, upload it, and return the vault item."""
        with self.runtime.database.write_session() as session:
            bank = session.scalar(select(Bank).where(Bank.name == KNOWN_BANK))
            if bank is None:
                bank = bank_store.create_bank(
                    session, KNOWN_BANK, HashType.SHA256, BankAction.BLOCK, 0
                )
            bank_store.add_hashes(session, bank, [hashlib.sha256(data).hexdigest()])
        defaults: dict[str, Any] = {
            "ip": "203.0.113.7",
            "port": 51234,
            "user_agent": "Mozilla/5.0 (stand-in)",
            "trust_level": TrustLevel.NEW,
            "account_created_at": self.clock.now() - timedelta(days=2),
            "account": {"screen_name": f"{uploader}-name", "email": f"{uploader}@example.test"},
            "page_url": "https://forum.example.test/threads/42",
        }
        outcome = self.runtime.screening.screen(
            self.site,
            data,
            UploaderContext(uploader_id=uploader, **{**defaults, **context}),
            idempotency_key=None,
            actor="test",
        )
        assert outcome.submission.decision == "block"
        with self.runtime.database.session() as session:
            item = find_item_for_submission(session, outcome.submission.id)
            assert item is not None, "a known illegal image is preserved"
            session.expunge(item)
            return item


def open_vault_site(data_dir: Path, database_url: str | None, **overrides: Any) -> VaultSite:
    extra: dict[str, Any] = {"workers": {"embedded": False}, **overrides}
    if database_url:
        extra["database_url"] = database_url
    settings = load_settings(data_dir=data_dir, **extra)
    clock = ManualClock(START)
    runtime = Runtime.open(settings, clock=clock)
    with runtime.database.write_session() as session:
        row = get_or_create_site(session, SITE_NAME)
        site = SiteRef(row.id, row.name)
    return VaultSite(runtime, clock, site)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return None


@pytest.fixture
def vault_site(tmp_path: Path, database_url: str | None) -> Iterator[VaultSite]:
    """A site on SQLite and on PostgreSQL (the test runs twice)."""
    opened = open_vault_site(tmp_path / "data", database_url)
    yield opened
    opened.runtime.close()


@pytest.fixture
def sqlite_vault_site(tmp_path: Path) -> Iterator[VaultSite]:
    """The same on SQLite only, for tests whose subject is not the database."""
    opened = open_vault_site(tmp_path / "data", None)
    yield opened
    opened.runtime.close()


def invoke(*args: str | Path) -> Result:
    """``vigil ARGS`` in-process, on a wide terminal."""
    return test_cli.invoke(*args, env=WIDE)


def succeed(*args: str | Path) -> Result:
    """``vigil ARGS`` in-process, on a wide terminal; it must exit 0."""
    return test_cli.succeed(*args, env=WIDE)
