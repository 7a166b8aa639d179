"""Importing and matching on PostgreSQL, as a scaled-out deployment runs them."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.images import encode, make_photo
from tests.matching.conftest import ACTOR, bank_with
from tests.matching.support import signals_of
from vigil.config import Settings, load_settings
from vigil.matching import admin, importer
from vigil.matching.banks import BankAction
from vigil.runtime import Runtime
from vigil.signals import HashType
from vigil.store import banks as bank_store
from vigil.store.database import Database


@pytest.fixture
def pg_runtime(
    postgres_url: str, tmp_path: Path, make_runtime: Callable[[Settings], Runtime]
) -> Runtime:
    runtime = make_runtime(load_settings(data_dir=tmp_path / "data", database_url=postgres_url))
    assert runtime.database.dialect == "postgresql"
    return runtime


def test_import_and_match_on_postgresql(pg_runtime: Runtime, postgres_url: str) -> None:
    known = encode(make_photo(480, 360, seed=300), "JPEG", quality=90)
    copy = encode(Image.open(io.BytesIO(known)), "JPEG", quality=70)
    unrelated = encode(make_photo(480, 360, seed=301), "JPEG", quality=90)
    known_pdq = signals_of(known).frame_hashes[0].value
    sha256 = hashlib.sha256(known).hexdigest()
    bank_with(pg_runtime, "exact", HashType.SHA256)
    bank_with(pg_runtime, "near", HashType.PDQ, BankAction.HOLD)

    exact_report = importer.import_file(
        pg_runtime.database,
        "exact",
        io.BytesIO(f"sha256,name\n{sha256.upper()},known.jpg\nnot-a-hash,x\n".encode()),
        actor=ACTOR,
    )
    near_report = importer.import_file(
        pg_runtime.database,
        "near",
        io.BytesIO(f"{known_pdq},100,known.jpg\n{'0f' * 32},10,flat.jpg\n".encode()),
        actor=ACTOR,
        quality_floor=50,
    )
    again = importer.import_values(pg_runtime.database, "exact", [sha256], actor=ACTOR)

    assert (exact_report.added, exact_report.bad_line_count) == (1, 1)
    assert (near_report.added, near_report.low_quality) == (1, 1)
    assert (again.added, again.already_present) == (0, 1)

    def banks_matching(data: bytes) -> list[str]:
        return sorted(m.bank for m in pg_runtime.matcher.match(signals_of(data)).matches)

    assert banks_matching(known) == ["exact", "near"]
    assert banks_matching(copy) == ["near"]
    assert banks_matching(unrelated) == []

    # Another process allow-lists the picture; this one's index notices without a restart.
    other = Database(postgres_url)
    try:
        allow = admin.create_bank(
            other,
            pg_runtime.settings.matching,
            name="allow",
            hash_type=HashType.PDQ,
            action=BankAction.IGNORE,
            threshold=None,
            enabled=True,
            description=None,
            actor="other process",
        )
        importer.import_values(other, allow.name, [known_pdq], actor="other process")
    finally:
        other.dispose()
    report = pg_runtime.matcher.match(signals_of(known))
    assert [m.bank for m in report.matches] == ["exact"]
    assert [(m.bank, allowed.bank) for m, allowed in report.suppressed] == [("near", "allow")]

    admin.remove_hash(pg_runtime.database, "exact", sha256, actor=ACTOR)
    assert banks_matching(known) == []
    with pg_runtime.database.session() as session:
        counts = {bank.name: bank.hash_count for bank in bank_store.list_banks(session)}
    assert counts == {"allow": 1, "exact": 0, "near": 1}
