"""API tests run twice: on the embedded SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.images import encode, make_photo
from vigil.actions.images import ImageStore
from vigil.config import Settings, load_settings
from vigil.runtime import Runtime
from vigil.store.sites import Role, create_api_key, get_or_create_site


@pytest.fixture(params=["sqlite", "postgresql"])
def make_settings(request: pytest.FixtureRequest, tmp_path: Any) -> Callable[..., Settings]:
    database_url = (
        request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    )

    def build(**overrides: Any) -> Settings:
        if database_url:
            overrides.setdefault("database_url", database_url)
        return load_settings(data_dir=tmp_path / "data", **overrides)

    return build


def screen(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    context: dict[str, Any] | str | None = None,
    *,
    filename: str = "upload.jpg",
    content_type: str = "image/jpeg",
    idempotency_key: str | None = None,
) -> Any:
    """POST /v1/screen the way a site does; returns the response."""
    form: dict[str, str] = {}
    if context is not None:
        form["context"] = context if isinstance(context, str) else json.dumps(context)
    request_headers = dict(headers)
    if idempotency_key is not None:
        request_headers["Idempotency-Key"] = idempotency_key
    return client.post(
        "/v1/screen",
        headers=request_headers,
        files={"image": (filename, data, content_type)},
        data=form,
    )


def create_bank(
    client: TestClient,
    headers: dict[str, str],
    name: str,
    hash_type: str,
    action: str,
    **extra: Any,
) -> None:
    response = client.post(
        "/v1/banks",
        headers=headers,
        json={"name": name, "hash_type": hash_type, "action": action, **extra},
    )
    assert response.status_code == 201, response.text


def add_hashes(client: TestClient, headers: dict[str, str], bank: str, values: list[str]) -> Any:
    response = client.post(f"/v1/banks/{bank}/hashes", headers=headers, json=values)
    assert response.status_code == 200, response.text
    return response.json()


def site_key(runtime: Runtime, site: str, role: Role) -> tuple[str, dict[str, str]]:
    """A new key for ``site`` (created if new): its prefix and its request headers."""
    with runtime.database.session() as session:
        key, plain = create_api_key(session, get_or_create_site(session, site), role)
        return key.prefix, {"Authorization": f"Bearer {plain}"}


def hold_exactly(client: TestClient, headers: dict[str, str], image: bytes) -> None:
    """Put the image's SHA-256 in the ``review`` hold bank (created on first use)."""
    sha256 = screen(client, headers, image).json()["hashes"]["sha256"]
    if client.get("/v1/banks/review", headers=headers).status_code == 404:
        create_bank(client, headers, "review", "sha256", "hold")
    add_hashes(client, headers, "review", [sha256])


def has_stored_copy(runtime: Runtime, submission_id: str) -> bool:
    return runtime.images.exists(ImageStore.relative_path(submission_id))


def pdq_of(client: TestClient, headers: dict[str, str], data: bytes) -> str:
    """The PDQ hash Vigil computes for an image (frame 0), via a screening."""
    response = screen(client, headers, data)
    assert response.status_code == 200, response.text
    return str(response.json()["hashes"]["pdq"][0]["hash"])


@pytest.fixture
def stand_in() -> bytes:
    """The test's stand-in for a known illegal image: a generated picture, as PNG."""
    return encode(make_photo(800, 600, seed=101), "PNG")
