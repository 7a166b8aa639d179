"""``vigil user ...``: the review app's accounts managed from the command line, checked by
signing in to the real app on the same database (SQLite and PostgreSQL); and the ``admin``
account a fresh instance starts with.

Commands run in-process through Typer's runner, as in tests/test_cli.py; the ones about what the
process shows on failure (exit code, a one-line message, no traceback) run as subprocesses of
``python -m vigil.cli``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pyotp
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from tests.review.conftest import PASSWORD, Browsers, csrf_token
from tests.test_serve import running_server
from vigil.cli import app
from vigil.config import Settings
from vigil.errors import VigilError
from vigil.review import accounts
from vigil.runtime import Runtime
from vigil.store import users as user_store
from vigil.store.models import AuditEvent

NEW_PASSWORD = "an entirely different passphrase"
_SECRET = re.compile(r"secret: ([A-Z2-7]+)\s")
_URI = re.compile(r"uri:\s+(otpauth://\S+)")

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_vigil_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the surrounding shell must not leak into what these tests check."""
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)


def command_environment(settings: Settings) -> dict[str, str]:
    """What points a command at the test's database (the data folder is passed explicitly)."""
    return {"VIGIL_DATABASE_URL": settings.database_url} if settings.database_url else {}


@pytest.fixture
def vigil(settings: Settings, runtime: Runtime) -> Callable[..., Result]:
    """``vigil ARGS --data-dir ...`` in-process, on the database the running app uses."""

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(
            app,
            [*args, "--data-dir", str(settings.data_dir)],
            input=stdin,
            env=command_environment(settings),
        )

    return invoke


@pytest.fixture
def vigil_process(settings: Settings, runtime: Runtime) -> Callable[..., Any]:
    """``vigil ARGS --data-dir ...`` as its own process, through ``main()``."""

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("VIGIL_")
        }
        return subprocess.run(
            [sys.executable, "-m", "vigil.cli", *args, "--data-dir", str(settings.data_dir)],
            input=stdin,
            capture_output=True,
            text=True,
            env={**environment, **command_environment(settings)},
            timeout=120,
        )

    return run


def succeed(result: Result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def assert_error_without_traceback(
    process: subprocess.CompletedProcess[str], *fragments: str
) -> None:
    assert process.returncode == 1, (process.returncode, process.stdout, process.stderr)
    assert "Traceback" not in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr
    for fragment in fragments:
        assert fragment in process.stderr


def login(client: TestClient, name: str, password: str = PASSWORD, code: str = "") -> int:
    """The status of a sign-in through the login form: 303 in, 401 refused."""
    form = client.get("/review/login")
    response = client.post(
        "/review/login",
        data={
            "csrf_token": csrf_token(form.text),
            "name": name,
            "password": password,
            "code": code,
        },
        follow_redirects=False,
    )
    assert response.status_code in (303, 401), response.text
    return response.status_code


def user_names(runtime: Runtime) -> list[str]:
    with runtime.database.session() as session:
        return [user.name for user in user_store.list_users(session)]


def role_of(runtime: Runtime, name: str) -> str:
    with runtime.database.session() as session:
        return user_store.get_user(session, name).role


def printed_totp(output: str) -> pyotp.TOTP:
    secret = _SECRET.search(output)
    assert secret is not None, output
    return pyotp.TOTP(secret.group(1))


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of a printed table's row whose first cell is ``first_cell``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{output}")


def signed_in_browser(browsers: Browsers, name: str, password: str = PASSWORD) -> TestClient:
    client = browsers()
    assert login(client, name, password) == 303
    assert client.get("/review/queue", follow_redirects=False).status_code == 200
    return client


def is_signed_out(client: TestClient) -> bool:
    response = client.get("/review/queue", follow_redirects=False)
    return response.status_code == 303 and response.headers["location"].startswith("/review/login")


# --- user add -------------------------------------------------------------------------------------


def test_user_add_creates_a_moderator_who_can_sign_in(
    vigil: Callable[..., Result], runtime: Runtime, app_client: Browsers
) -> None:
    output = succeed(
        vigil("user", "add", "alice", "--role", "moderator", "--password-stdin", stdin=PASSWORD)
    )
    assert "user alice created with role moderator" in output
    assert PASSWORD not in output

    assert role_of(runtime, "alice") == "moderator"
    with runtime.database.session() as session:
        stored = user_store.get_user(session, "alice").password_hash
        events = session.query(AuditEvent).filter_by(action="user.create", subject="alice").all()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert len(events) == 1
    assert events[0].actor.startswith("cli:")

    client = app_client()
    assert login(client, "alice") == 303
    page = client.get("/review/queue")
    assert "alice" in page.text
    assert "moderator" in page.text
    assert login(app_client(), "alice", "not the password") == 401


def test_user_add_asks_for_the_password_twice_without_password_stdin(
    vigil: Callable[..., Result], app_client: Browsers
) -> None:
    mismatch = vigil("user", "add", "bob", stdin=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0

    output = succeed(vigil("user", "add", "bob", "--role", "viewer", stdin=f"{PASSWORD}\n" * 2))
    assert "user bob created with role viewer" in output
    assert login(app_client(), "bob") == 303


def test_the_password_from_stdin_keeps_its_spaces_but_not_its_line_ending(
    vigil: Callable[..., Result], app_client: Browsers
) -> None:
    password = "  spaces at both ends  "
    succeed(vigil("user", "add", "carol", "--password-stdin", stdin=f"{password}\r\n"))

    assert login(app_client(), "carol", password) == 303
    assert login(app_client(), "carol", password.strip()) == 401


def test_adding_a_user_twice_is_an_error_without_a_traceback(
    vigil: Callable[..., Result],
    vigil_process: Callable[..., Any],
    runtime: Runtime,
    app_client: Browsers,
) -> None:
    succeed(vigil("user", "add", "alice", "--password-stdin", stdin=PASSWORD))

    process = vigil_process(
        "user", "add", "alice", "--role", "admin", "--password-stdin", stdin=NEW_PASSWORD + "\n"
    )
    assert_error_without_traceback(process, "alice", "exists already")
    assert user_names(runtime) == ["alice"]
    assert role_of(runtime, "alice") == "moderator"
    assert login(app_client(), "alice", NEW_PASSWORD) == 401
    assert login(app_client(), "alice") == 303


def test_a_short_password_is_refused_and_no_user_is_created(
    vigil_process: Callable[..., Any], runtime: Runtime
) -> None:
    process = vigil_process("user", "add", "shorty", "--password-stdin", stdin="elevenchars\n")
    assert_error_without_traceback(process, "at least 12 characters")
    assert user_names(runtime) == []


def test_an_invalid_user_name_or_role_is_refused(
    vigil: Callable[..., Result], runtime: Runtime
) -> None:
    for name in ("bad name", "_under", "ünï", "a" * 101, "x/../y", "<script>"):
        result = vigil("user", "add", name, "--password-stdin", stdin=PASSWORD)
        assert result.exit_code != 0, name
        assert isinstance(result.exception, VigilError), (name, result.exception)
    unknown_role = vigil("user", "add", "dave", "--role", "superuser", "--password-stdin")
    assert unknown_role.exit_code == 2  # a usage error, before anything is asked or written
    assert user_names(runtime) == []


def test_user_add_with_totp_prints_a_secret_and_an_otpauth_uri(
    vigil: Callable[..., Result], app_client: Browsers
) -> None:
    output = succeed(vigil("user", "add", "alice", "--totp", "--password-stdin", stdin=PASSWORD))
    totp = printed_totp(output)
    uri = _URI.search(output)
    assert uri is not None, output
    parts = urlsplit(uri.group(1))
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Vigil:alice"
    query = parse_qs(parts.query)
    assert query["secret"] == [totp.secret]
    assert query["issuer"] == ["Vigil"]

    assert login(app_client(), "alice") == 401  # the code is now required
    assert login(app_client(), "alice", code=totp.now()) == 303


# --- managing users -------------------------------------------------------------------------------


def test_user_list_shows_each_users_role_second_factor_and_state(
    vigil: Callable[..., Result], app_client: Browsers
) -> None:
    succeed(vigil("user", "add", "alice", "--role", "viewer", "--password-stdin", stdin=PASSWORD))
    succeed(
        vigil(
            "user",
            "add",
            "bob",
            "--role",
            "child_safety",
            "--totp",
            "--password-stdin",
            stdin=PASSWORD,
        )
    )
    succeed(vigil("user", "disable", "bob"))
    assert login(app_client(), "alice") == 303

    output = succeed(vigil("user", "list"))
    alice = table_row(output, "alice")
    bob = table_row(output, "bob")
    assert alice[1:4] == ["viewer", "no", "active"]
    assert re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", alice[4]), alice
    assert bob[1:] == ["child_safety", "yes", "disabled", "never"]
    assert PASSWORD not in output


def test_user_role_changes_what_a_user_may_do_and_signs_them_out(
    vigil: Callable[..., Result], runtime: Runtime, app_client: Browsers
) -> None:
    succeed(
        vigil("user", "add", "alice", "--role", "moderator", "--password-stdin", stdin=PASSWORD)
    )
    before = signed_in_browser(app_client, "alice")

    assert "alice is now viewer" in succeed(vigil("user", "role", "alice", "viewer"))
    assert role_of(runtime, "alice") == "viewer"
    assert is_signed_out(before)

    client = signed_in_browser(app_client, "alice")
    csrf = csrf_token(client.get("/review/queue").text)
    claim = client.post("/review/queue/next", data={"csrf_token": csrf}, follow_redirects=False)
    assert claim.status_code == 403

    assert vigil("user", "role", "alice", "emperor").exit_code == 2
    assert role_of(runtime, "alice") == "viewer"


def test_user_password_sets_a_new_password_and_signs_the_user_out(
    vigil: Callable[..., Result], app_client: Browsers
) -> None:
    succeed(vigil("user", "add", "alice", "--password-stdin", stdin=PASSWORD))
    before = signed_in_browser(app_client, "alice")

    short = vigil("user", "password", "alice", "--password-stdin", stdin="too short\n")
    assert short.exit_code != 0
    assert isinstance(short.exception, VigilError)
    assert not is_signed_out(before)

    output = succeed(vigil("user", "password", "alice", "--password-stdin", stdin=NEW_PASSWORD))
    assert "password of alice changed" in output
    assert is_signed_out(before)
    assert login(app_client(), "alice", PASSWORD) == 401
    assert login(app_client(), "alice", NEW_PASSWORD) == 303


def test_user_totp_sets_up_a_second_factor_and_remove_takes_it_off(
    vigil: Callable[..., Result], app_client: Browsers
) -> None:
    succeed(vigil("user", "add", "alice", "--password-stdin", stdin=PASSWORD))
    before = signed_in_browser(app_client, "alice")

    totp = printed_totp(succeed(vigil("user", "totp", "alice")))
    assert is_signed_out(before)  # a session signed in without the factor does not survive it
    assert login(app_client(), "alice") == 401
    assert login(app_client(), "alice", code=totp.now()) == 303

    replaced = printed_totp(succeed(vigil("user", "totp", "alice")))
    assert replaced.secret != totp.secret

    assert "second factor of alice removed" in succeed(vigil("user", "totp", "alice", "--remove"))
    assert login(app_client(), "alice") == 303


def test_user_disable_stops_sign_ins_and_enable_allows_them_again(
    vigil: Callable[..., Result], app_client: Browsers
) -> None:
    succeed(vigil("user", "add", "alice", "--password-stdin", stdin=PASSWORD))
    before = signed_in_browser(app_client, "alice")

    assert "alice disabled" in succeed(vigil("user", "disable", "alice"))
    assert is_signed_out(before)
    assert login(app_client(), "alice") == 401

    assert "alice enabled" in succeed(vigil("user", "disable", "alice", "--enable"))
    assert login(app_client(), "alice") == 303


def test_commands_on_an_unknown_user_fail_without_a_traceback(
    vigil_process: Callable[..., Any], runtime: Runtime
) -> None:
    process = vigil_process("user", "role", "ghost", "admin")
    assert_error_without_traceback(process, "no user named 'ghost'")
    assert user_names(runtime) == []


# --- the first account ----------------------------------------------------------------------------


def test_a_fresh_instance_gets_an_admin_whose_password_is_shown_once(
    runtime: Runtime, app_client: Browsers
) -> None:
    password = accounts.ensure_bootstrap_user(runtime.database)
    assert password is not None
    assert len(password) >= accounts.MIN_PASSWORD_LENGTH
    assert accounts.ensure_bootstrap_user(runtime.database) is None
    assert user_names(runtime) == ["admin"]
    assert role_of(runtime, "admin") == "admin"

    client = app_client()
    assert login(client, "admin", password) == 303
    assert "(admin)" in client.get("/review/queue").text


def test_no_admin_is_created_once_any_account_exists(
    vigil: Callable[..., Result], runtime: Runtime
) -> None:
    succeed(vigil("user", "add", "alice", "--role", "viewer", "--password-stdin", stdin=PASSWORD))

    assert accounts.ensure_bootstrap_user(runtime.database) is None
    assert user_names(runtime) == ["alice"]


def test_vigil_serve_prints_an_admin_password_that_signs_in(tmp_path: Path) -> None:
    """The real first start, over HTTP (a single run: it starts a server)."""
    with running_server(tmp_path / "data", tmp_path / "logs") as server:
        output = server.output()
        found = re.search(r"sign in as 'admin' with this password \(shown once\):\s+(\S+)", output)
        assert found is not None, output
        password = found.group(1)

        form = httpx.get(f"{server.url}/review/login", timeout=10)
        assert form.status_code == 200
        # The login cookie is Secure, so an HTTP client keeps it to itself: send it by hand.
        cookie = form.cookies.get("vigil_login_csrf")
        assert cookie
        response = httpx.post(
            f"{server.url}/review/login",
            data={"csrf_token": csrf_token(form.text), "name": "admin", "password": password},
            headers={"Cookie": f"vigil_login_csrf={cookie}"},
            timeout=30,
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/review/queue"
        assert "vigil_session=" in response.headers["set-cookie"]
