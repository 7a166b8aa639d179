"""Who may sign in to the review app, how their browser stays signed in, and what each role may
do: passwords, second factors, login sessions, CSRF tokens, the permission matrix and hostile
input, on the real app over real SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import html
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import pyotp
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tests.review.conftest import PASSWORD, Browsers, add_user, csrf_token, held_upload, sign_in
from vigil.errors import InvalidRequest
from vigil.policy.decision import Priority
from vigil.review import accounts
from vigil.review.accounts import UserRole
from vigil.runtime import Runtime
from vigil.store import users as user_store
from vigil.store.models import (
    AuditEvent,
    Exposure,
    LoginSession,
    Submission,
    UploaderSuspension,
    User,
)
from vigil.store.types import utcnow

SESSION_COOKIE = "vigil_session"
REFUSED = "wrong name, password or code"
_ERROR = re.compile(r'<p class="error" role="alert">([^<]*)</p>')
_NEXT_FIELD = re.compile(r'name="next" value="([^"]*)"')


# --- helpers --------------------------------------------------------------------------------------


def post_login(
    client: TestClient,
    name: str,
    password: str = PASSWORD,
    code: str = "",
    next_page: str | None = None,
) -> Any:
    """The login form, filled in and sent; the response itself (redirects not followed)."""
    form = client.get("/review/login")
    assert form.status_code == 200, form.text
    data = {"csrf_token": csrf_token(form.text), "name": name, "password": password, "code": code}
    if next_page is not None:
        data["next"] = next_page
    return client.post("/review/login", data=data, follow_redirects=False)


def login_error(response: Any) -> str:
    found = _ERROR.search(response.text)
    assert found is not None, response.text
    return found.group(1)


def signed_in(
    browsers: Browsers, runtime: Runtime, name: str, role: UserRole
) -> tuple[TestClient, str]:
    """A new browser signed in as a new user of ``role``, and its session's CSRF token."""
    add_user(runtime, name, role)
    client = browsers()
    page = sign_in(client, name)
    assert page.status_code == 200, page.text
    assert page.url.path == "/review/queue"
    return client, csrf_token(page.text)


def user_of(runtime: Runtime, name: str) -> User:
    with runtime.database.session() as session:
        user = user_store.get_user(session, name)
        session.expunge(user)
        return user


def sessions_of(runtime: Runtime, name: str) -> list[LoginSession]:
    with runtime.database.session() as session:
        rows = session.scalars(
            select(LoginSession)
            .join(User, User.id == LoginSession.user_id)
            .where(User.name == name)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def submission_of(runtime: Runtime, submission_id: str) -> Submission:
    with runtime.database.session() as session:
        submission = session.get_one(Submission, submission_id)
        session.expunge(submission)
        return submission


def audit_actions(runtime: Runtime, subject: str) -> list[str]:
    with runtime.database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subject == subject)
                .order_by(AuditEvent.id)
            )
        )


def state(runtime: Runtime) -> dict[str, object]:
    """Everything a state-changing request could change, to show that a refused one did not."""
    with runtime.database.session() as session:

        def count(model: type) -> int:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

        return {
            "audit": count(AuditEvent),
            "sessions": count(LoginSession),
            "exposures": count(Exposure),
            "suspensions": count(UploaderSuspension),
            "submissions": sorted(
                (s.id, s.review_state, s.decision, s.claimed_by, s.priority, tuple(s.flags))
                for s in session.scalars(select(Submission))
            ),
            "users": sorted(
                (u.name, u.role, u.show_images, u.failed_logins, u.locked_until, u.disabled_at)
                for u in session.scalars(select(User))
            ),
        }


def shift_login_sessions(runtime: Runtime, name: str, **values: object) -> None:
    """Rewrite the user's login sessions (to make time pass)."""
    with runtime.database.session() as session:
        user_id = user_store.get_user(session, name).id
        session.execute(
            update(LoginSession).where(LoginSession.user_id == user_id).values(**values)
        )


def assert_sent_to_login(response: Any) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/review/login?next=")


def assert_html(response: Any) -> None:
    assert response.headers["content-type"].startswith("text/html"), response.headers


def assert_client_error_page(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert_html(response)


def away_from_step_boundary() -> None:
    """Wait out the last seconds of a 30-second TOTP step, so a code computed now is judged
    in the same step by the server."""
    remaining = 30 - time.time() % 30
    if remaining < 3:
        time.sleep(remaining + 0.2)


def sign_in_at_once(browsers: Browsers, forms: list[dict[str, str]]) -> list[int]:
    """The login form, filled in as given, sent by several browsers at the same moment (as a
    guessing script would); the statuses of the answers."""
    clients = [browsers() for _ in forms]
    tokens = [csrf_token(client.get("/review/login").text) for client in clients]
    start = threading.Barrier(len(clients))
    statuses = [0] * len(clients)

    def send(index: int) -> None:
        start.wait()
        response = clients[index].post(
            "/review/login",
            data={**forms[index], "csrf_token": tokens[index]},
            follow_redirects=False,
        )
        statuses[index] = response.status_code

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


@pytest.fixture
def api(app_client: Browsers) -> TestClient:
    """A browser-less client for the site's API calls (screening uploads)."""
    return app_client()


# --- passwords ------------------------------------------------------------------------------------


def test_only_an_argon2_hash_of_the_password_is_stored(runtime: Runtime) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)

    stored = user_of(runtime, "alice").password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)


def test_a_password_shorter_than_twelve_characters_is_refused(runtime: Runtime) -> None:
    with pytest.raises(InvalidRequest, match="at least 12"):
        add_user(runtime, "shorty", UserRole.MODERATOR, password="x" * 11)
    with pytest.raises(InvalidRequest, match="at most"):
        add_user(runtime, "longy", UserRole.MODERATOR, password="x" * 1025)
    with runtime.database.session() as session:
        assert user_store.list_users(session) == []

    add_user(runtime, "exactly12", UserRole.MODERATOR, password="x" * 12)
    with runtime.database.session() as session:
        assert [user.name for user in user_store.list_users(session)] == ["exactly12"]


def test_the_right_password_signs_in_and_lands_on_the_queue(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    client = app_client()

    response = post_login(client, "alice")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/review/queue"
    queue = client.get("/review/queue")
    assert queue.status_code == 200
    assert "alice" in queue.text
    assert user_of(runtime, "alice").last_login_at is not None
    assert "user.login" in audit_actions(runtime, "alice")


def test_wrong_password_unknown_name_and_disabled_user_get_the_same_answer(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    add_user(runtime, "gone", UserRole.MODERATOR)
    with runtime.database.session() as session:
        user = user_store.get_user(session, "gone")
        accounts.set_disabled(session, user, True, actor="test", now=utcnow())
    client = app_client()

    answers = [
        post_login(client, "alice", "not the password at all"),
        post_login(client, "nobody-by-this-name", PASSWORD),
        post_login(client, "gone", PASSWORD),  # the right password of a disabled account
    ]
    for response in answers:
        assert response.status_code == 401
        assert_html(response)
        assert login_error(response) == REFUSED
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert sessions_of(runtime, "alice") == []
    assert sessions_of(runtime, "gone") == []


def test_wrong_passwords_in_a_row_pause_the_account_even_for_the_right_password(
    runtime: Runtime, app_client: Browsers
) -> None:
    limit = runtime.settings.review.max_login_failures
    add_user(runtime, "alice", UserRole.MODERATOR)
    client = app_client()

    assert post_login(client, "alice", "wrong password 1").status_code == 401
    # The request failed, yet its failure was counted (committed, not rolled back).
    assert user_of(runtime, "alice").failed_logins == 1
    for attempt in range(2, limit + 1):
        assert post_login(client, "alice", f"wrong password {attempt}").status_code == 401

    assert user_of(runtime, "alice").locked_until is not None
    paused = post_login(client, "alice", PASSWORD)
    assert paused.status_code == 401
    assert login_error(paused) == REFUSED
    assert sessions_of(runtime, "alice") == []
    actions = audit_actions(runtime, "alice")
    assert actions.count("user.login_failed") == limit
    assert "user.login" not in actions

    # When the pause is over, the right password works again.
    with runtime.database.session() as session:
        user_store.get_user(session, "alice").locked_until = utcnow() - timedelta(seconds=1)
    assert post_login(client, "alice", PASSWORD).status_code == 303


def test_a_right_password_resets_the_count_of_wrong_ones(
    runtime: Runtime, app_client: Browsers
) -> None:
    limit = runtime.settings.review.max_login_failures
    add_user(runtime, "alice", UserRole.MODERATOR)
    client = app_client()
    for attempt in range(limit - 1):
        assert post_login(client, "alice", f"wrong password {attempt}").status_code == 401
    assert post_login(client, "alice", PASSWORD).status_code == 303

    assert user_of(runtime, "alice").failed_logins == 0
    assert post_login(app_client(), "alice", "one more wrong one").status_code == 401
    assert user_of(runtime, "alice").locked_until is None


def test_wrong_passwords_sent_at_once_all_count_towards_the_pause(
    runtime: Runtime, app_client: Browsers
) -> None:
    limit = runtime.settings.review.max_login_failures
    add_user(runtime, "alice", UserRole.MODERATOR)

    guesses = [{"name": "alice", "password": f"guess number {n}"} for n in range(2 * limit)]
    assert set(sign_in_at_once(app_client, guesses)) == {401}

    assert user_of(runtime, "alice").locked_until is not None
    assert audit_actions(runtime, "alice").count("user.login_failed") == limit
    assert post_login(app_client(), "alice", PASSWORD).status_code == 401


# --- second factor --------------------------------------------------------------------------------


def enrol(runtime: Runtime, name: str) -> pyotp.TOTP:
    with runtime.database.session() as session:
        user = user_store.get_user(session, name)
        secret = accounts.enrol_totp(session, user, actor="test")
    return pyotp.TOTP(secret)


def test_an_enrolled_user_signs_in_only_with_a_valid_current_code(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    totp = enrol(runtime, "alice")
    client = app_client()

    assert post_login(client, "alice", PASSWORD, code="").status_code == 401
    away_from_step_boundary()
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    refused = post_login(client, "alice", PASSWORD, code=wrong)
    assert refused.status_code == 401
    assert login_error(refused) == REFUSED
    assert post_login(client, "alice", PASSWORD, code="abcdef").status_code == 401
    assert sessions_of(runtime, "alice") == []

    response = post_login(client, "alice", PASSWORD, code=totp.now())
    assert response.status_code == 303, response.text
    assert client.get("/review/queue").status_code == 200


def test_a_code_works_only_once(runtime: Runtime, app_client: Browsers) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    totp = enrol(runtime, "alice")
    away_from_step_boundary()
    code = totp.now()
    earlier = totp.at(time.time() - totp.interval)

    assert post_login(app_client(), "alice", PASSWORD, code=code).status_code == 303
    # Someone who saw the code (over a shoulder, or in a phishing proxy) cannot use it again,
    # nor the one before it.
    replay = post_login(app_client(), "alice", PASSWORD, code=code)
    assert replay.status_code == 401
    assert login_error(replay) == REFUSED
    assert post_login(app_client(), "alice", PASSWORD, code=earlier).status_code == 401
    assert len(sessions_of(runtime, "alice")) == 1


def test_a_code_sent_by_several_browsers_at_once_signs_in_only_one(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    totp = enrol(runtime, "alice")
    away_from_step_boundary()
    code = totp.now()

    form = {"name": "alice", "password": PASSWORD, "code": code}
    statuses = sign_in_at_once(app_client, [form] * 6)
    assert sorted(statuses) == [303] + [401] * 5
    assert len(sessions_of(runtime, "alice")) == 1


def test_the_code_of_the_previous_step_is_accepted(runtime: Runtime, app_client: Browsers) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    totp = enrol(runtime, "alice")
    away_from_step_boundary()
    previous = totp.at(time.time() - totp.interval)

    assert post_login(app_client(), "alice", PASSWORD, code=previous).status_code == 303
    # Spaces, as authenticator apps show the code, are fine.
    spaced = totp.now()
    response = post_login(app_client(), "alice", PASSWORD, code=f"{spaced[:3]} {spaced[3:]}")
    assert response.status_code == 303
    # Two steps back is too old (unless that code happens to equal a valid one).
    away_from_step_boundary()
    stale = totp.at(time.time() - 2 * totp.interval)
    if stale not in {totp.now(), totp.at(time.time() - totp.interval)}:
        assert post_login(app_client(), "alice", PASSWORD, code=stale).status_code == 401


# --- login sessions -------------------------------------------------------------------------------


def set_cookie_attributes(response: Any, name: str) -> dict[str, str]:
    """The attributes of the Set-Cookie header for ``name``, lower-cased names."""
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        if first.startswith(f"{name}="):
            found = {"value": first.split("=", 1)[1]}
            for attribute in attributes:
                key, _, value = attribute.partition("=")
                found[key.lower()] = value
            return found
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def test_the_session_cookie_is_httponly_secure_samesite_strict_and_scoped_to_review(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    client = app_client()
    form = client.get("/review/login")
    login_cookie = set_cookie_attributes(form, "vigil_login_csrf")
    assert {"httponly", "secure"} <= login_cookie.keys()
    assert login_cookie["samesite"].lower() == "strict"
    assert login_cookie["path"] == "/review"

    response = post_login(client, "alice")
    cookie = set_cookie_attributes(response, SESSION_COOKIE)
    assert "httponly" in cookie
    assert "secure" in cookie
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/review"
    hours = runtime.settings.review.session_hours
    assert 0 < int(cookie["max-age"]) <= hours * 3600
    assert len(cookie["value"]) >= 32


def test_only_a_hash_of_the_session_token_is_stored(runtime: Runtime, app_client: Browsers) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    response = post_login(app_client(), "alice")
    token = set_cookie_attributes(response, SESSION_COOKIE)["value"]

    [row] = sessions_of(runtime, "alice")
    stored = [str(getattr(row, column.key)) for column in LoginSession.__table__.columns]
    assert not any(token in value for value in stored)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()


def test_signing_out_ends_the_session_on_the_server(runtime: Runtime, app_client: Browsers) -> None:
    client, csrf = signed_in(app_client, runtime, "alice", UserRole.MODERATOR)
    token = client.cookies.get(SESSION_COOKIE)
    assert token

    response = client.post("/review/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/review/login"
    assert sessions_of(runtime, "alice") == []
    assert "user.logout" in audit_actions(runtime, "alice")

    # A copy of the old cookie (kept by malware, or a shared computer) no longer works.
    thief = app_client()
    reused = thief.get(
        "/review/queue", headers={"Cookie": f"{SESSION_COOKIE}={token}"}, follow_redirects=False
    )
    assert_sent_to_login(reused)


def test_a_session_past_its_lifetime_is_refused(runtime: Runtime, app_client: Browsers) -> None:
    client, _ = signed_in(app_client, runtime, "alice", UserRole.MODERATOR)
    [row] = sessions_of(runtime, "alice")
    hours = runtime.settings.review.session_hours
    assert row.expires_at - row.created_at == timedelta(hours=hours)

    # Active all along (last seen just now), but created longer ago than a session lasts.
    now = utcnow()
    shift_login_sessions(
        runtime,
        "alice",
        created_at=now - timedelta(hours=hours, seconds=1),
        expires_at=now - timedelta(seconds=1),
        last_seen_at=now,
    )
    assert_sent_to_login(client.get("/review/queue", follow_redirects=False))


def test_a_session_left_idle_is_refused(runtime: Runtime, app_client: Browsers) -> None:
    client, _ = signed_in(app_client, runtime, "alice", UserRole.MODERATOR)
    idle = timedelta(minutes=runtime.settings.review.idle_minutes)

    shift_login_sessions(runtime, "alice", last_seen_at=utcnow() - idle - timedelta(seconds=5))
    assert_sent_to_login(client.get("/review/queue", follow_redirects=False))


def test_using_the_app_keeps_a_session_from_going_idle(
    runtime: Runtime, app_client: Browsers
) -> None:
    client, _ = signed_in(app_client, runtime, "alice", UserRole.MODERATOR)
    idle = timedelta(minutes=runtime.settings.review.idle_minutes)

    shift_login_sessions(runtime, "alice", last_seen_at=utcnow() - idle + timedelta(minutes=1))
    assert client.get("/review/queue").status_code == 200
    [row] = sessions_of(runtime, "alice")
    assert utcnow() - row.last_seen_at < timedelta(minutes=1)
    assert client.get("/review/status").status_code == 200


def test_a_refused_idle_session_is_deleted(runtime: Runtime, app_client: Browsers) -> None:
    client, _ = signed_in(app_client, runtime, "alice", UserRole.MODERATOR)
    idle = timedelta(minutes=runtime.settings.review.idle_minutes)
    shift_login_sessions(runtime, "alice", last_seen_at=utcnow() - idle - timedelta(seconds=5))

    assert_sent_to_login(client.get("/review/queue", follow_redirects=False))
    assert sessions_of(runtime, "alice") == []


def _change_password(session: Any, user: User) -> None:
    accounts.set_password(session, user, "a brand new passphrase", actor="test")


def _change_role(session: Any, user: User) -> None:
    accounts.set_role(session, user, UserRole.VIEWER, actor="test")


def _disable(session: Any, user: User) -> None:
    accounts.set_disabled(session, user, True, actor="test", now=utcnow())


@pytest.mark.parametrize(
    "change",
    [_change_password, _change_role, _disable],
    ids=["password", "role", "disabled"],
)
def test_changing_a_users_password_role_or_access_ends_their_sessions(
    runtime: Runtime, app_client: Browsers, change: Callable[[Any, User], None]
) -> None:
    client, _ = signed_in(app_client, runtime, "alice", UserRole.MODERATOR)
    other, _ = signed_in(app_client, runtime, "bob", UserRole.MODERATOR)
    assert client.get("/review/queue").status_code == 200

    with runtime.database.session() as session:
        change(session, user_store.get_user(session, "alice"))

    assert sessions_of(runtime, "alice") == []
    assert_sent_to_login(client.get("/review/queue", follow_redirects=False))
    assert other.get("/review/queue").status_code == 200  # nobody else is signed out


def test_a_user_disabled_behind_the_apps_back_is_refused(
    runtime: Runtime, app_client: Browsers
) -> None:
    """Even if a session row outlives the account's disabling (a direct database edit)."""
    client, _ = signed_in(app_client, runtime, "alice", UserRole.MODERATOR)
    with runtime.database.session() as session:
        user_store.get_user(session, "alice").disabled_at = utcnow()

    assert_sent_to_login(client.get("/review/queue", follow_redirects=False))


# --- CSRF -----------------------------------------------------------------------------------------


def test_login_without_the_login_form_cookie_is_refused(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    before = state(runtime)

    # Another site's page posting to our login form: it has no cookie of ours.
    forged = app_client().post(
        "/review/login",
        data={"csrf_token": "anything", "name": "alice", "password": PASSWORD},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert_html(forged)
    assert state(runtime) == before


@pytest.mark.parametrize(
    "field", [None, "", "not-the-cookie-value"], ids=["missing", "empty", "other"]
)
def test_login_with_a_field_not_matching_the_login_cookie_is_refused(
    runtime: Runtime, app_client: Browsers, field: str | None
) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    client = app_client()
    assert client.get("/review/login").status_code == 200  # the cookie is set
    before = state(runtime)

    data = {"name": "alice", "password": PASSWORD}
    if field is not None:
        data["csrf_token"] = field
    response = client.post("/review/login", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert state(runtime) == before


@pytest.fixture
def moderator(runtime: Runtime, app_client: Browsers) -> tuple[TestClient, str]:
    return signed_in(app_client, runtime, "mod", UserRole.MODERATOR)


# Each action: path (with {id}), form fields, whether the item must first be opened (claimed).
_ACTIONS: dict[str, tuple[str, dict[str, str], bool]] = {
    "logout": ("/review/logout", {}, False),
    "preferences": ("/review/preferences", {"show_images": "false"}, False),
    "queue-next": ("/review/queue/next", {}, False),
    "decision": ("/review/items/{id}/decision", {"decision": "reject", "note": "x"}, False),
    "reveal": ("/review/items/{id}/reveal", {}, True),
    "release": ("/review/items/{id}/release", {}, True),
    "clean-up": (
        "/review/uploader/clean-up",
        {"site": "default", "uploader": "u1", "confirm": "true"},
        False,
    ),
}


@pytest.mark.parametrize("action", list(_ACTIONS))
def test_a_state_changing_post_without_the_sessions_csrf_token_is_refused(
    runtime: Runtime,
    app_client: Browsers,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
    action: str,
) -> None:
    client, csrf = moderator
    _, someone_elses = signed_in(app_client, runtime, "other", UserRole.MODERATOR)
    item = held_upload(api, site_headers, seed=1)
    path, fields, opened = _ACTIONS[action]
    path = path.format(id=item)
    if opened:
        assert client.get(f"/review/items/{item}").status_code == 200
    before = state(runtime)

    forged = [
        ({}, {}),
        ({"csrf_token": ""}, {}),
        ({"csrf_token": csrf[:-2]}, {}),
        ({"csrf_token": someone_elses}, {}),
        ({}, {"X-CSRF-Token": someone_elses}),
        ({}, {"X-CSRF-Token": ""}),
    ]
    for extra, headers in forged:
        response = client.post(
            path, data={**fields, **extra}, headers=headers, follow_redirects=False
        )
        assert response.status_code == 403, (extra, headers, response.text)
        assert_html(response)
        assert state(runtime) == before, (extra, headers)

    # The same request with the session's own token goes through (so the token was the reason).
    accepted = client.post(path, data={**fields, "csrf_token": csrf}, follow_redirects=False)
    assert accepted.status_code in (200, 303), accepted.text
    assert state(runtime) != before


def test_the_csrf_token_may_come_in_a_header(
    runtime: Runtime, moderator: tuple[TestClient, str]
) -> None:
    client, csrf = moderator
    response = client.post(
        "/review/preferences",
        data={"show_images": "false"},
        headers={"X-CSRF-Token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert user_of(runtime, "mod").show_images is False


def test_a_csrf_token_does_not_outlive_its_session(runtime: Runtime, app_client: Browsers) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    client = app_client()
    old = csrf_token(sign_in(client, "alice").text)
    client.post("/review/logout", data={"csrf_token": old})
    fresh = csrf_token(sign_in(client, "alice").text)
    assert fresh != old

    response = client.post(
        "/review/preferences",
        data={"show_images": "false", "csrf_token": old},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert user_of(runtime, "alice").show_images is True


# --- roles ----------------------------------------------------------------------------------------


def test_a_viewer_can_look_at_every_page(
    runtime: Runtime, app_client: Browsers, api: TestClient, site_headers: dict[str, str]
) -> None:
    item = held_upload(api, site_headers, seed=2)
    viewer, _ = signed_in(app_client, runtime, "watcher", UserRole.VIEWER)

    for path in (
        "/review/queue",
        "/review/status",
        "/review/audit",
        f"/review/items/{item}",
        "/review/uploader?site=default&id=u1",
    ):
        response = viewer.get(path)
        assert response.status_code == 200, (path, response.text)
        assert_html(response)
    page = viewer.get(f"/review/items/{item}").text
    assert "can look but not decide" in page
    assert f"/review/items/{item}/decision" not in page
    assert f"/review/items/{item}/preview" not in page
    assert submission_of(runtime, item).claimed_by is None  # looking claims nothing


def test_a_viewer_cannot_decide_reveal_preview_claim_or_clean_up(
    runtime: Runtime, app_client: Browsers, api: TestClient, site_headers: dict[str, str]
) -> None:
    item = held_upload(api, site_headers, seed=3)
    viewer, csrf = signed_in(app_client, runtime, "watcher", UserRole.VIEWER)
    before = state(runtime)

    posts = {
        f"/review/items/{item}/decision": {"decision": "approve"},
        f"/review/items/{item}/reveal": {},
        "/review/queue/next": {},
        "/review/uploader/clean-up": {"site": "default", "uploader": "u1", "confirm": "true"},
    }
    for path, fields in posts.items():
        response = viewer.post(path, data={**fields, "csrf_token": csrf}, follow_redirects=False)
        assert response.status_code == 403, (path, response.text)
        assert_html(response)
    preview = viewer.get(f"/review/items/{item}/preview")
    assert preview.status_code == 403
    assert not preview.headers["content-type"].startswith("image/")
    assert state(runtime) == before
    assert submission_of(runtime, item).review_state == "pending"


def escalate(
    runtime: Runtime,
    escalator: tuple[TestClient, str],
    api: TestClient,
    headers: dict[str, str],
    seed: int,
) -> str:
    """A held item that a moderator handed to the child-safety team."""
    item = held_upload(api, headers, seed=seed, uploader=f"up{seed}")
    client, csrf = escalator
    response = client.post(
        f"/review/items/{item}/decision",
        data={"decision": "escalate", "note": "looks young", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    escalated = submission_of(runtime, item)
    assert escalated.review_state == "pending"
    assert escalated.priority == Priority.URGENT.rank
    assert "child_safety" in escalated.flags
    assert "submission.escalated" in audit_actions(runtime, item)
    return item


def test_a_moderator_can_escalate_but_not_decide_a_child_safety_item(
    runtime: Runtime,
    app_client: Browsers,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
) -> None:
    item = escalate(runtime, moderator, api, site_headers, seed=4)
    client, csrf = signed_in(app_client, runtime, "mod2", UserRole.MODERATOR)
    before = state(runtime)

    for decision in ("approve", "reject", "illegal", "escalate"):
        response = client.post(
            f"/review/items/{item}/decision",
            data={"decision": decision, "csrf_token": csrf},
            follow_redirects=False,
        )
        assert response.status_code == 403, (decision, response.text)
    assert client.get(f"/review/items/{item}/preview").status_code == 403
    reveal = client.post(f"/review/items/{item}/reveal", data={"csrf_token": csrf})
    assert reveal.status_code == 403
    page = client.get(f"/review/items/{item}").text
    assert "only the child-safety team reviews it" in page
    assert state(runtime) == before
    # Review next skips it: nothing else waits, so there is nothing for this moderator.
    following = client.post("/review/queue/next", data={"csrf_token": csrf}, follow_redirects=False)
    assert following.headers["location"] == "/review/queue?done=empty"


def test_a_moderator_cannot_reject_as_illegal(
    runtime: Runtime,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
) -> None:
    item = held_upload(api, site_headers, seed=5)
    client, csrf = moderator
    assert "Reject as illegal" not in client.get(f"/review/items/{item}").text

    response = client.post(
        f"/review/items/{item}/decision",
        data={"decision": "illegal", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert response.status_code == 403
    submission = submission_of(runtime, item)
    assert submission.review_state == "pending"
    assert not submission.known_illegal
    assert "evidence.preserved" not in audit_actions(runtime, item)

    # An ordinary decision on the same item is theirs to make.
    approved = client.post(
        f"/review/items/{item}/decision",
        data={"decision": "approve", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert approved.status_code == 303
    assert submission_of(runtime, item).decision == "allow"


@pytest.mark.parametrize("role", [UserRole.CHILD_SAFETY, UserRole.ADMIN])
def test_the_child_safety_team_and_admins_decide_child_safety_items(
    runtime: Runtime,
    app_client: Browsers,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
    role: UserRole,
) -> None:
    cleared = escalate(runtime, moderator, api, site_headers, seed=6)
    illegal = escalate(runtime, moderator, api, site_headers, seed=7)
    client, csrf = signed_in(app_client, runtime, "specialist", role)
    assert "Reject as illegal" in client.get(f"/review/items/{cleared}").text

    preview = client.get(f"/review/items/{cleared}/preview")
    assert preview.status_code == 200
    assert preview.headers["content-type"] == "image/jpeg"
    approved = client.post(
        f"/review/items/{cleared}/decision",
        data={"decision": "approve", "note": "an adult", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert approved.status_code == 303, approved.text
    assert submission_of(runtime, cleared).decision == "allow"

    rejected = client.post(
        f"/review/items/{illegal}/decision",
        data={"decision": "illegal", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert rejected.status_code == 303, rejected.text
    submission = submission_of(runtime, illegal)
    assert submission.decision == "block"
    assert submission.known_illegal
    assert "evidence.preserved" in audit_actions(runtime, illegal)


# --- signing in from a link -----------------------------------------------------------------------


def test_an_unauthenticated_visit_goes_to_the_login_page_and_back(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.VIEWER)
    for path in (
        "/review/queue",
        "/review/status",
        "/review/audit?actor=user%3Aalice&action=",
        "/review/items/0b7e0e55-0000-4000-8000-000000000000",
        "/review/items/x/preview",
        "/review/uploader?site=default&id=u1",
    ):
        client = app_client()
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/review/login?next={quote(path)}"
        form = client.get(response.headers["location"])
        assert next_field(form.text) == path

        landed = post_login(client, "alice", next_page=path)
        assert landed.status_code == 303
        assert landed.headers["location"] == path


def next_field(page: str) -> str:
    found = _NEXT_FIELD.search(page)
    assert found is not None, page
    return html.unescape(found.group(1))


def test_an_unauthenticated_post_changes_nothing_and_goes_to_the_login_page(
    runtime: Runtime, app_client: Browsers, api: TestClient, site_headers: dict[str, str]
) -> None:
    item = held_upload(api, site_headers, seed=8)
    before = state(runtime)

    for path in (f"/review/items/{item}/decision", "/review/queue/next", "/review/logout"):
        response = app_client().post(path, data={"decision": "approve"}, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/review/login?next={quote('/review/queue')}"
    # A script's request is told 401, not redirected to a page it cannot use.
    fetched = app_client().post(
        "/review/queue/next", headers={"X-Requested-With": "fetch"}, follow_redirects=False
    )
    assert fetched.status_code == 401
    assert state(runtime) == before


def test_the_next_page_after_login_never_leaves_the_app(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.VIEWER)
    for target in (
        "https://evil.example",
        "https://evil.example/review/queue",
        "//evil.example",
        "//evil.example/review/queue",
        "/\\evil.example",
        "/review/\\\\evil.example",
        "javascript:alert(1)",
        "/review/x?u=https://evil.example",
        "review/queue",
        "/reviewer",
        "",
    ):
        client = app_client()
        form = client.get("/review/login", params={"next": target})
        assert next_field(form.text) == "/review/queue", target
        landed = post_login(client, "alice", next_page=target)
        assert landed.status_code == 303
        assert landed.headers["location"] == "/review/queue", target


def test_the_page_after_changing_preferences_never_leaves_the_app(
    runtime: Runtime, moderator: tuple[TestClient, str]
) -> None:
    client, csrf = moderator
    for back, landing in (
        ("/review/status", "/review/status"),
        ("https://evil.example", "/review/queue"),
        ("//evil.example", "/review/queue"),
    ):
        response = client.post(
            "/review/preferences",
            data={"show_images": "true", "back": back, "csrf_token": csrf},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == landing


def test_an_odd_next_path_inside_the_app_stays_on_this_site(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.VIEWER)
    for target in ("/review/../x", "/review//evil.example", "/review/@evil.example"):
        landed = post_login(app_client(), "alice", next_page=target)
        assert landed.status_code == 303
        resolved = urlsplit(urljoin("https://testserver/review/login", landed.headers["location"]))
        assert (resolved.scheme, resolved.netloc) == ("https", "testserver"), target


# --- hostile input --------------------------------------------------------------------------------


def test_overlong_login_fields_are_refused_without_a_server_error(
    runtime: Runtime, app_client: Browsers
) -> None:
    add_user(runtime, "alice", UserRole.MODERATOR)
    client = app_client()
    for field, value in (
        ("name", "a" * 10_000),
        ("password", "p" * 5_000),
        ("code", "1" * 1_000),
        ("next", "/review/" + "x" * 10_000),
        ("name", "élise'; DROP TABLE users; --"),
        ("name", "<script>alert(1)</script>"),
    ):
        form = client.get("/review/login")
        data = {"csrf_token": csrf_token(form.text), "name": "alice", "password": PASSWORD}
        data[field] = value
        response = client.post("/review/login", data=data, follow_redirects=False)
        assert_client_error_page(response)
        assert "<script>alert" not in response.text
    assert sessions_of(runtime, "alice") == []


def test_a_nul_character_in_a_login_name_is_a_client_error(
    runtime: Runtime, app_client: Browsers
) -> None:
    """PostgreSQL refuses NUL in text: it must be turned away before the database sees it."""
    add_user(runtime, "alice", UserRole.MODERATOR)
    response = post_login(app_client(), "alice\x00", PASSWORD)
    assert_client_error_page(response)


def test_a_nul_character_anywhere_is_a_client_error(
    runtime: Runtime,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
) -> None:
    item = held_upload(api, site_headers, seed=13)
    client, csrf = moderator
    before = state(runtime)

    for response in (
        client.get("/review/items/%00"),
        client.post(
            "/review/items/a%00b/decision", data={"decision": "reject", "csrf_token": csrf}
        ),
        client.post(
            f"/review/items/{item}/decision",
            data={"decision": "reject", "note": "a\x00b", "csrf_token": csrf},
        ),
        client.get("/review/uploader", params={"site": "default", "id": "u\x00"}),
        client.get("/review/audit", params={"actor": "\x00"}),
        client.get("/review/audit", params={"subject": "a\x00"}),
        client.post(
            "/review/uploader/clean-up",
            data={"site": "default", "uploader": "u1", "related": "x\x00", "confirm": "true"},
            headers={"X-CSRF-Token": csrf},
        ),
    ):
        assert_client_error_page(response)
    assert state(runtime) == before


def test_an_overlong_note_is_refused_and_the_item_stays_pending(
    runtime: Runtime,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
) -> None:
    item = held_upload(api, site_headers, seed=9)
    client, csrf = moderator

    response = client.post(
        f"/review/items/{item}/decision",
        data={"decision": "reject", "note": "n" * 5_000, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert_client_error_page(response)
    assert submission_of(runtime, item).review_state == "pending"


def test_an_unknown_decision_is_refused(
    runtime: Runtime,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
) -> None:
    item = held_upload(api, site_headers, seed=10)
    client, csrf = moderator
    before = state(runtime)

    for decision in ("APPROVE", "", "delete", "approve\x00", "allow", "d" * 10_000, None):
        data = {"csrf_token": csrf}
        if decision is not None:
            data["decision"] = decision
        response = client.post(f"/review/items/{item}/decision", data=data, follow_redirects=False)
        assert_client_error_page(response)
    assert state(runtime) == before


def test_unknown_or_hostile_submission_ids_are_client_errors(
    runtime: Runtime, moderator: tuple[TestClient, str]
) -> None:
    client, csrf = moderator
    before = state(runtime)

    for odd in (
        "nope",
        "0" * 10_000,
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%5C..%5Cwindows%5Cwin.ini",
        "%27%20OR%20%271%27%3D%271",
        "%F0%9F%92%A3",
        "%FF%FE",
        "0b7e0e55-0000-4000-8000-000000000000",
    ):
        for response in (
            client.get(f"/review/items/{odd}"),
            client.get(f"/review/items/{odd}/preview"),
            client.post(
                f"/review/items/{odd}/decision", data={"decision": "reject", "csrf_token": csrf}
            ),
            client.post(f"/review/items/{odd}/reveal", data={"csrf_token": csrf}),
        ):
            assert_client_error_page(response)
        released = client.post(
            f"/review/items/{odd}/release", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert_client_error_page(released)
    assert state(runtime) == before


def test_odd_uploader_pages_are_client_errors(moderator: tuple[TestClient, str]) -> None:
    client, _ = moderator
    for query in (
        {"site": "no-such-site", "id": "u1"},
        {"site": "default", "id": "nobody"},
        {"site": "default", "id": "u" * 10_000},
        {"site": "s" * 10_000, "id": "u1"},
        {"site": "default"},
        {},
    ):
        assert_client_error_page(client.get("/review/uploader", params=query))


_GARBAGE = (
    (b"\xff\xfe\x00\x80garbage=%%%&&==\xc3", "application/x-www-form-urlencoded"),
    (b"--xyz\r\nnot a part\r\n", "multipart/form-data; boundary=xyz"),
    (b"anything", "multipart/form-data"),
    (b'{"decision": "approve"}', "application/json"),
    (b"\x00" * 5_000, "application/octet-stream"),
    (b"decision=approve&decision=reject&csrf_token=x", "text/plain"),
)


def test_garbage_bodies_are_client_errors(
    runtime: Runtime,
    app_client: Browsers,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
) -> None:
    item = held_upload(api, site_headers, seed=11)
    client, csrf = moderator
    stranger = app_client()
    stranger.get("/review/login")
    before = state(runtime)

    for body, content_type in _GARBAGE:
        for sender, path, headers in (
            (stranger, "/review/login", {}),
            (client, f"/review/items/{item}/decision", {}),
            # With a valid token in the header, the body itself must be judged.
            (client, f"/review/items/{item}/decision", {"X-CSRF-Token": csrf}),
            (client, "/review/uploader/clean-up", {"X-CSRF-Token": csrf}),
            (client, "/review/preferences", {}),
        ):
            response = sender.post(
                path,
                content=body,
                headers={"Content-Type": content_type, **headers},
                follow_redirects=False,
            )
            assert_client_error_page(response)
    assert state(runtime) == before


def test_bad_audit_page_parameters_are_client_errors(moderator: tuple[TestClient, str]) -> None:
    client, _ = moderator
    for query in (
        "before=-1",
        "before=0",
        "before=abc",
        "before=1e3",
        "before=",
        "actor=" + "a" * 500,
        "action=" + "x" * 500,
        "subject=" + "s" * 500,
    ):
        assert_client_error_page(client.get(f"/review/audit?{query}"))


def test_an_audit_page_number_too_large_for_the_database_is_a_client_error(
    moderator: tuple[TestClient, str],
) -> None:
    client, _ = moderator
    assert_client_error_page(client.get(f"/review/audit?before={2**63}"))


def test_audit_filters_with_odd_characters_are_harmless(
    moderator: tuple[TestClient, str],
) -> None:
    client, _ = moderator
    for value in ("%", "_", "\\", "'", "<script>", "ü"):
        response = client.get("/review/audit", params={"actor": value, "subject": value})
        assert response.status_code == 200, (value, response.text)
        assert "<script>" not in response.text.split("<main>", 1)[1]


def test_an_unknown_review_page_is_an_html_404(
    moderator: tuple[TestClient, str], app_client: Browsers
) -> None:
    for client in (app_client(), moderator[0]):
        for path in (
            "/review/nope",
            "/review/items",
            "/review/static/nope.js",
            "/review/static/%2e%2e/%2e%2e/pyproject.toml",
        ):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 404, (path, response.status_code)
            assert_html(response)


def test_a_get_to_a_post_only_action_is_a_client_error(
    moderator: tuple[TestClient, str],
) -> None:
    client, _ = moderator
    for path in ("/review/logout", "/review/queue/next", "/review/uploader/clean-up"):
        response = client.get(path, follow_redirects=False)
        assert_client_error_page(response)


def assert_security_headers(response: Any, *, cached: bool = False) -> None:
    policy = response.headers.get("content-security-policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives.get("script-src") == ["'self'"], policy
    assert directives.get("frame-ancestors") == ["'none'"], policy
    assert response.headers.get("x-frame-options") == "DENY"
    if not cached:
        assert response.headers.get("cache-control") == "no-store", response.url
    assert response.headers.get("x-content-type-options") == "nosniff"


def test_every_review_response_carries_the_security_headers(
    runtime: Runtime,
    app_client: Browsers,
    api: TestClient,
    site_headers: dict[str, str],
    moderator: tuple[TestClient, str],
) -> None:
    item = held_upload(api, site_headers, seed=12)
    client, csrf = moderator
    anonymous = app_client()

    responses = [
        anonymous.get("/review/login"),
        anonymous.get("/review/queue", follow_redirects=False),
        anonymous.get("/review/nope"),
        anonymous.post("/review/login", data={}),
        post_login(app_client(), "mod", "wrong password!"),
        client.get("/review/queue"),
        client.get(f"/review/items/{item}"),
        client.get(f"/review/items/{item}/preview"),
        client.post(f"/review/items/{item}/reveal", data={"csrf_token": csrf}),
        client.post(f"/review/items/{item}/decision", data={"decision": "x", "csrf_token": csrf}),
        client.get("/review/audit?before=abc"),
        client.get("/review/status"),
    ]
    for response in responses:
        assert response.status_code < 500
        assert_security_headers(response)
    # The app's own script and style may be cached, but carry the same policy.
    for path in ("/review/static/review.js", "/review/static/review.css"):
        static = anonymous.get(path)
        assert static.status_code == 200
        assert_security_headers(static, cached=True)


def test_api_errors_stay_json(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    api = app_client()
    for response, status in (
        (api.get("/v1/submissions/nope"), 401),
        (api.get("/v1/submissions/nope", headers=site_headers), 404),
        (api.get("/v1/nope", headers=site_headers), 404),
        (api.post("/v1/screen", headers=site_headers, content=b"\xff\xfe"), 400),
    ):
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert "code" in response.json()["error"]
        assert "content-security-policy" not in response.headers
