"""Shared fixtures: real settings, real databases (SQLite; PostgreSQL where asked), a real app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# pytest-xdist's workers inherit COLUMNS=80, which rich would fix as the CLI consoles' width when
# vigil.commands is imported; without it they follow COLUMNS as each test sets it (a plain run).
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

from fastapi.testclient import TestClient  # after the environment above is set
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from vigil.api import create_app
from vigil.config import Settings, load_settings
from vigil.runtime import Runtime, ensure_bootstrap_key

# The PostgreSQL server tests use; .ci/run makes sure it is running.
POSTGRES_URL = os.environ.get(
    "VIGIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        with create_engine(
            POSTGRES_URL, connect_args={"connect_timeout": 3}
        ).connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        return str(error).splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_reason() -> str | None:
    return postgres_available()


@pytest.fixture
def postgres_url(postgres_reason: str | None) -> Iterator[str]:
    """A PostgreSQL URL whose search path is a fresh schema, dropped after the test."""
    if postgres_reason is not None:
        if os.environ.get("VIGIL_REQUIRE_POSTGRES"):
            pytest.fail(
                f"PostgreSQL is required here but unreachable at {POSTGRES_URL}: {postgres_reason}"
            )
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {postgres_reason}")
    schema = f"vigil_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def make_settings(tmp_path: Any) -> Callable[..., Settings]:
    """Settings for a fresh data folder, with any section overridden: policy={...}."""

    def build(**overrides: Any) -> Settings:
        return load_settings(data_dir=tmp_path / "data", **overrides)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def make_runtime() -> Iterator[Callable[[Settings], Runtime]]:
    opened: list[Runtime] = []

    def build(settings: Settings) -> Runtime:
        runtime = Runtime.open(settings)
        opened.append(runtime)
        return runtime

    yield build
    for runtime in opened:
        runtime.close()


@pytest.fixture
def runtime(settings: Settings, make_runtime: Callable[[Settings], Runtime]) -> Runtime:
    return make_runtime(settings)


@pytest.fixture
def admin_key(runtime: Runtime) -> str:
    key = ensure_bootstrap_key(runtime.database)
    assert key is not None
    return key


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin_headers(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}
