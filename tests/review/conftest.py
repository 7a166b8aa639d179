"""Review-app tests: a real app over real SQLite and PostgreSQL, signed in as real users."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import make_settings, screen  # noqa: F401 - both databases, one helper
from tests.images import encode, make_photo
from vigil.api import create_app
from vigil.config import Settings
from vigil.review.accounts import UserRole, create_user
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.store.sites import get_site, set_webhook

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_user(runtime: Runtime, name: str, role: UserRole, password: str = PASSWORD) -> None:
    with runtime.database.write_session() as session:
        create_user(session, name, role, password, actor="test")


def csrf_token(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str = PASSWORD, code: str = "") -> Any:
    """Sign in through the login form, as a browser does; returns the final response."""
    form = client.get("/review/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/review/login",
        data={
            "csrf_token": csrf_token(form.text),
            "name": name,
            "password": password,
            "code": code,
        },
    )


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:  # noqa: F811
    """Images from new accounts are held, so every test can fill the queue."""
    return make_settings(policy={"hold_new_uploaders": True})


@pytest.fixture
def app_client(runtime: Runtime) -> Iterator[Callable[[], TestClient]]:
    """New browsers (each with its own cookies) on one running app, over HTTPS as in production
    (the session cookie is Secure)."""
    app = create_app(runtime)
    opened: list[TestClient] = []

    def browser() -> TestClient:
        client = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield browser
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def site_headers(runtime: Runtime) -> dict[str, str]:
    """The bootstrap admin key of the ``default`` site."""
    key = ensure_bootstrap_key(runtime.database)
    assert key is not None
    return {"Authorization": f"Bearer {key}"}


def set_site_webhook(runtime: Runtime, url: str, site: str = "default") -> None:
    with runtime.database.session() as session:
        set_webhook(get_site(session, site), url, rotate_secret=False)


def held_upload(
    client: TestClient,
    headers: dict[str, str],
    *,
    seed: int,
    uploader: str = "u1",
    image: bytes | None = None,
) -> str:
    """Screen a generated photo from a new account (so it is held); returns the submission id."""
    data = image if image is not None else encode(make_photo(400, 300, seed=seed), "JPEG")
    response = screen(client, headers, data, {"uploader_id": uploader, "trust_level": "new"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "hold", body
    return str(body["submission_id"])
