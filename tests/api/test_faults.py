"""When a part Vigil needs is down, the answer is 503 (the site holds the image), never allow."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import hold_exactly, screen
from tests.images import encode, make_photo
from vigil.api import create_app
from vigil.config import Settings, load_settings
from vigil.runtime import Runtime, ensure_bootstrap_key


def test_a_locked_database_makes_screening_answer_503(
    tmp_path: Path, make_runtime: Callable[[Settings], Runtime]
) -> None:
    # Wait only briefly for the lock, so the test does not take the production timeout.
    settings = load_settings(data_dir=tmp_path / "data", database_lock_timeout_seconds=0.2)
    runtime = make_runtime(settings)
    headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        healthy = screen(client, headers, encode(make_photo(seed=1), "JPEG"))
        # Another process holds the write lock (a stuck migration, a backup tool...).
        blocker = sqlite3.connect(settings.data_dir / "vigil.db", timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            locked = screen(client, headers, encode(make_photo(seed=2), "JPEG"))
            not_ready = client.get("/readyz")
        finally:
            blocker.rollback()
            blocker.close()
        recovered = screen(client, headers, encode(make_photo(seed=3), "JPEG"))

    assert healthy.status_code == 200
    assert locked.status_code == 503
    assert locked.json()["error"]["code"] in {"screening_unavailable", "database_unavailable"}
    assert "allow" not in locked.text
    assert not_ready.status_code == 503
    assert recovered.status_code == 200
    assert recovered.json()["decision"] == "allow"


def test_an_image_store_that_cannot_write_makes_a_hold_answer_503(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    image = encode(make_photo(seed=4), "JPEG")
    hold_exactly(client, admin_headers, image)
    # The store's folder is replaced by a file: every write fails, as on a full or read-only disk.
    store = runtime.images.root
    if store.exists():
        import shutil

        shutil.rmtree(store)
    store.write_text("not a folder")

    response = screen(client, admin_headers, image)
    unrelated = screen(client, admin_headers, encode(make_photo(seed=5), "JPEG"))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "screening_unavailable"
    # Allowing needs no stored copy, so unrelated uploads still flow.
    assert unrelated.json()["decision"] == "allow"
