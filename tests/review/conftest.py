"""Review-app tests: a real app over real SQLite and PostgreSQL, signed in as real users."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


Browsers = Callable[[], TestClient]


@pytest.fixture
def settings(make_settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Settings:  # noqa: F811
    """Images from new accounts are held, so every test can fill the queue; ``review``
    settings come through indirect parametrisation."""
    review: dict[str, Any] = getattr(request, "param", {})
    return make_settings(policy={"hold_new_uploaders": True}, review=review)


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


@dataclass
class Person:
    """A signed-in browser of the review app."""

    name: str
    client: TestClient
    csrf: str

    def get(self, url: str) -> Any:
        return self.client.get(url)

    def item(self, submission_id: str) -> Any:
        return self.client.get(f"/review/items/{submission_id}")

    def preview(self, submission_id: str) -> Any:
        return self.client.get(f"/review/items/{submission_id}/preview")

    def reveal(self, submission_id: str) -> Any:
        """As the page's script asks for it: a POST with the CSRF token in a header."""
        return self.client.post(
            f"/review/items/{submission_id}/reveal",
            headers={"X-CSRF-Token": self.csrf, "X-Requested-With": "fetch"},
        )

    def post(self, url: str, **form: str) -> Any:
        """Submit a form of the app (with the session's CSRF token); redirects not followed."""
        return self.client.post(url, data={"csrf_token": self.csrf, **form}, follow_redirects=False)

    def decide(self, submission_id: str, decision: str, note: str = "") -> Any:
        return self.post(f"/review/items/{submission_id}/decision", decision=decision, note=note)

    def review_next(self) -> str | None:
        """POST /review/queue/next: the id of the item it opened, or None (queue empty)."""
        response = self.post("/review/queue/next")
        assert response.status_code == 303, response.text
        found = re.fullmatch(r"/review/items/([0-9a-f-]{36})(\?.*)?", response.headers["location"])
        return found.group(1) if found else None


def signed_in(runtime: Runtime, browsers: Browsers, name: str, role: UserRole) -> Person:
    """A new user of ``role``, signed in on a browser of their own."""
    add_user(runtime, name, role)
    client = browsers()
    landing = sign_in(client, name)
    assert landing.status_code == 200, landing.text
    assert landing.url.path == "/review/queue"
    return Person(name, client, csrf_token(landing.text))


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
