"""The status page (screenings per hour, the queue, the banks) and the audit log page."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.api.conftest import add_hashes, create_bank, screen
from tests.images import encode, make_photo
from tests.review.conftest import add_user, csrf_token, held_upload, sign_in
from vigil.review import status
from vigil.review.accounts import UserRole
from vigil.runtime import Runtime
from vigil.store import audit
from vigil.store.models import Submission
from vigil.store.types import utcnow

_RECT = re.compile(
    r'<rect class="(\w+)" x="([\d.]+)" y="(-?[\d.]+)" width="([\d.]+)" height="([\d.]+)">'
)
_AUDIT_ROW = re.compile(
    r"<tr>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>(.*?)</td>", re.S
)
_OLDER = re.compile(r'<a href="([^"]+)">Older</a>')


# --- helpers ---------------------------------------------------------------------------------


def _viewer(app_client: Callable[[], TestClient], runtime: Runtime) -> TestClient:
    add_user(runtime, "vera", UserRole.VIEWER)
    browser = app_client()
    assert sign_in(browser, "vera").status_code == 200
    return browser


def _image(seed: int) -> bytes:
    return encode(make_photo(320, 240, seed=seed), "JPEG")


def _screened(
    client: TestClient, headers: dict[str, str], seed: int, trust: str, expected: str
) -> str:
    response = screen(
        client, headers, _image(seed), {"uploader_id": f"u{seed}", "trust_level": trust}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == expected, body
    return str(body["submission_id"])


def _block_bank_for(client: TestClient, headers: dict[str, str], seeds: list[int]) -> None:
    create_bank(client, headers, "known-bad", "sha256", "block")
    add_hashes(
        client,
        headers,
        "known-bad",
        [hashlib.sha256(_image(seed)).hexdigest() for seed in seeds],
    )


def _created_at(runtime: Runtime, moments: dict[str, datetime]) -> None:
    with runtime.database.session() as session:
        for submission_id, moment in moments.items():
            session.execute(
                update(Submission).where(Submission.id == submission_id).values(created_at=moment)
            )


# --- screenings per hour ---------------------------------------------------------------------


def test_hourly_counts_bucket_the_last_24_hours_by_first_decision(
    runtime: Runtime, app_client: Callable[[], TestClient], site_headers: dict[str, str]
) -> None:
    api = app_client()
    _block_bank_for(api, site_headers, [5])
    allowed = [_screened(api, site_headers, seed, "trusted", "allow") for seed in (1, 2, 3, 4)]
    blocked = _screened(api, site_headers, 5, "trusted", "block")
    held = [_screened(api, site_headers, seed, "new", "hold") for seed in (6, 7, 8)]
    # A held image a moderator approved still counts as held: the first decision.
    decided = api.post(
        f"/v1/submissions/{held[0]}/decision", headers=site_headers, json={"decision": "allow"}
    )
    assert decided.status_code == 200, decided.text

    now = utcnow()
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=23)
    _created_at(
        runtime,
        {
            # allowed[0] stays in the current hour
            allowed[1]: now - timedelta(hours=1),
            allowed[2]: now - timedelta(hours=1),
            held[0]: now - timedelta(hours=1),
            allowed[3]: now - timedelta(hours=5),
            blocked: now - timedelta(hours=5),
            held[1]: first,  # the very start of the oldest hour shown
            held[2]: first - timedelta(seconds=1),  # just before it: not shown
        },
    )
    # and one older than a day
    old = _screened(api, site_headers, 9, "trusted", "allow")
    _created_at(runtime, {old: now - timedelta(hours=30)})

    with runtime.database.session() as session:
        hours = status.hourly_counts(session, now)

    assert len(hours) == 24
    assert [hour.start for hour in hours] == [first + timedelta(hours=n) for n in range(24)]
    assert hours[-1].start == current
    counts = {
        index: (hour.allowed, hour.held, hour.blocked)
        for index, hour in enumerate(hours)
        if hour.screened
    }
    assert counts == {0: (0, 1, 0), 18: (1, 0, 1), 22: (2, 1, 0), 23: (1, 0, 0)}
    assert sum(hour.screened for hour in hours) == 7


def test_the_status_page_shows_totals_queue_chart_and_banks(
    runtime: Runtime, app_client: Callable[[], TestClient], site_headers: dict[str, str]
) -> None:
    api = app_client()
    _block_bank_for(api, site_headers, [5])
    create_bank(api, site_headers, "near-copies", "pdq", "hold")
    add_hashes(api, site_headers, "near-copies", ["ab" * 32, "cd" * 32])
    allowed = [_screened(api, site_headers, seed, "trusted", "allow") for seed in (1, 2, 3)]
    blocked = _screened(api, site_headers, 5, "trusted", "block")
    held = [held_upload(api, site_headers, seed=seed, uploader="u6") for seed in (6, 7, 8)]
    now = utcnow()
    _created_at(
        runtime,
        {
            allowed[0]: now - timedelta(hours=1),
            allowed[1]: now - timedelta(hours=1),
            held[0]: now - timedelta(hours=1),
            held[1]: now - timedelta(hours=1),
            blocked: now - timedelta(hours=5),
            allowed[2]: now - timedelta(hours=5),
            # Out of the chart, but still the oldest in the queue.
            held[2]: now - timedelta(hours=30),
        },
    )

    page = _viewer(app_client, runtime).get("/review/status")

    assert page.status_code == 200, page.text
    text = page.text
    assert re.search(r'id="total-screened">6<', text)
    assert re.search(r'class="tile allowed"><span class="n">3<', text)
    assert re.search(r'class="tile held"><span class="n">2<', text)
    assert re.search(r'class="tile blocked"><span class="n">1<', text)
    assert re.search(r'id="queue-size">3<', text)
    assert "oldest 30h 0m" in text

    chart = text[text.index("<svg") : text.index("</svg>")]
    assert 'id="hourly-chart"' in chart
    # One rect per non-empty segment, stacked per hour (same x).
    stacks: dict[str, list[tuple[str, float, float]]] = {}
    for kind, x, y, _, height in _RECT.findall(chart):
        stacks.setdefault(x, []).append((kind, float(y), float(height)))
    shapes = sorted(
        sorted((kind, round(height, 1)) for kind, _, height in stack) for stack in stacks.values()
    )
    # Scaled to the busiest hour: an hour ago 2 allowed + 2 held fill the 200 units;
    # five hours ago 1 allowed + 1 blocked take half of it.
    assert shapes == [
        [("allowed", 50.0), ("blocked", 50.0)],
        [("allowed", 100.0), ("held", 100.0)],
    ]
    for stack in stacks.values():
        # Each stack sits on the baseline, segments one on top of the other.
        bottom = 200.0
        for _, y, height in stack:
            assert y + height == pytest.approx(bottom, abs=0.05)
            bottom = y
        assert bottom > -0.05  # nothing above the top

    banks = text[text.index('<table class="banks">') :]
    assert re.search(
        r"<td>known-bad</td><td>sha256</td><td>block</td><td>\d+</td>\s*<td class=\"num\">1</td>",
        banks,
    )
    assert re.search(
        r"<td>near-copies</td><td>pdq</td><td>hold</td><td>\d+</td>\s*<td class=\"num\">2</td>",
        banks,
    )


def test_the_status_page_with_nothing_screened(
    runtime: Runtime, app_client: Callable[[], TestClient]
) -> None:
    page = _viewer(app_client, runtime).get("/review/status")

    assert page.status_code == 200, page.text
    assert re.search(r'id="total-screened">0<', page.text)
    assert re.search(r'id="queue-size">0<', page.text)
    assert "oldest" not in page.text
    assert _RECT.findall(page.text) == []
    assert "No banks yet." in page.text


def test_the_status_page_needs_a_login(app_client: Callable[[], TestClient]) -> None:
    response = app_client().get("/review/status", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/review/login")


# --- the audit log ---------------------------------------------------------------------------


def _audit_rows(page: str) -> list[tuple[str, str, str]]:
    """(actor, action, subject) of each row of the audit table, top to bottom."""
    body = page[page.index('<table class="audit">') :]
    body = body[: body.index("</table>")]
    return [
        (
            html.unescape(actor),
            html.unescape(action),
            html.unescape(re.sub(r"<[^>]+>", "", subject)),
        )
        for _, actor, action, subject in _AUDIT_ROW.findall(body)
    ]


def _audit(browser: TestClient, **filters: Any) -> Any:
    response = browser.get("/review/audit", params=filters)
    assert response.status_code == 200, response.text
    return response


def test_the_audit_page_shows_who_decided_what_and_filters(
    runtime: Runtime, app_client: Callable[[], TestClient], site_headers: dict[str, str]
) -> None:
    api = app_client()
    first = held_upload(api, site_headers, seed=1, uploader="u1")
    second = held_upload(api, site_headers, seed=2, uploader="u2")
    viewer = _viewer(app_client, runtime)
    add_user(runtime, "mona", UserRole.MODERATOR)
    moderator = app_client()
    sign_in(moderator, "mona")
    token = csrf_token(moderator.get("/review/queue").text)
    decided = moderator.post(
        f"/review/items/{first}/decision",
        data={"csrf_token": token, "decision": "reject", "note": "not here"},
        follow_redirects=False,
    )
    assert decided.status_code == 303, decided.text

    everything = _audit_rows(_audit(viewer).text)
    assert ("user:mona", "submission.decided", first) in everything
    assert everything[0] == ("user:mona", "submission.decided", first)  # newest first
    assert any(action == "submission.screened" for _, action, _ in everything)
    assert "decision=block" in _audit(viewer).text

    by_actor = _audit_rows(_audit(viewer, actor="mona").text)
    assert by_actor
    assert all("mona" in actor for actor, _, _ in by_actor)
    assert ("user:mona", "submission.decided", first) in by_actor

    by_action = _audit_rows(_audit(viewer, action="submission.screened").text)
    assert {subject for _, _, subject in by_action} >= {first, second}
    assert {action for _, action, _ in by_action} == {"submission.screened"}

    by_subject = _audit_rows(_audit(viewer, subject=first).text)
    assert {subject for _, _, subject in by_subject} == {first}
    assert {action for _, action, _ in by_subject} == {"submission.screened", "submission.decided"}

    combined = _audit_rows(_audit(viewer, subject=first, action="submission.screened").text)
    assert [(action, subject) for _, action, subject in combined] == [
        ("submission.screened", first)
    ]

    nothing = _audit(viewer, actor="user:nobody")
    assert _audit_rows(nothing.text) == []
    assert "Nothing matches." in nothing.text


def test_the_audit_page_pages_back_through_older_events(
    runtime: Runtime, app_client: Callable[[], TestClient]
) -> None:
    with runtime.database.session() as session:
        for number in range(250):
            audit.append(session, "bot:pager", "test.paged", f"event-{number:03d}", {"n": number})
            # Others' events in between: the filter holds on every page.
            audit.append(session, "bot:other", "test.paged", f"other-{number:03d}", {})
    viewer = _viewer(app_client, runtime)

    seen: list[list[str]] = []
    page = _audit(viewer, actor="bot:pager")
    while True:
        rows = _audit_rows(page.text)
        assert {actor for actor, _, _ in rows} == {"bot:pager"}
        seen.append([subject for _, _, subject in rows])
        older = _OLDER.search(page.text)
        if older is None:
            break
        assert len(seen) < 5, "paging does not end"
        page = viewer.get(html.unescape(older.group(1)))
        assert page.status_code == 200, page.text

    assert [len(rows) for rows in seen] == [100, 100, 50]
    everything = [subject for rows in seen for subject in rows]
    assert everything == [f"event-{number:03d}" for number in range(249, -1, -1)]


def test_the_audit_filters_match_wildcards_literally(
    runtime: Runtime, app_client: Callable[[], TestClient]
) -> None:
    with runtime.database.session() as session:
        for actor, subject in (
            ("odd%actor", "a%b"),
            ("odd_actor", "a_b"),
            ("oddXactor", "aXb"),
            ("odd/actor", "default/u1"),
        ):
            audit.append(session, actor, "test.hostile", subject, {})
    viewer = _viewer(app_client, runtime)

    def actors(**filters: str) -> list[str]:
        return sorted(actor for actor, _, _ in _audit_rows(_audit(viewer, **filters).text))

    def subjects(**filters: str) -> list[str]:
        return sorted(subject for _, _, subject in _audit_rows(_audit(viewer, **filters).text))

    assert actors(actor="%") == ["odd%actor"]
    assert actors(actor="d_a") == ["odd_actor"]
    assert actors(actor="odd%actor") == ["odd%actor"]
    assert subjects(subject="a%b") == ["a%b"]
    assert subjects(subject="_") == ["a_b"]
    assert subjects(subject="default/u1") == ["default/u1"]
    assert actors(actor="'; DROP TABLE audit_log; --") == []
    assert actors(actor="\\") == []
    # The log is still there.
    assert len(actors(action="test.hostile")) == 4


def test_unreasonable_audit_filters_are_refused(
    runtime: Runtime, app_client: Callable[[], TestClient]
) -> None:
    viewer = _viewer(app_client, runtime)
    for filters in (
        {"actor": "x" * 201},
        {"subject": "x" * 201},
        {"action": "x" * 51},
        {"action": "x" * 10_000},
        {"before": "0"},
        {"before": "-5"},
        {"before": "soon"},
    ):
        response = viewer.get("/review/audit", params=filters)

        assert 400 <= response.status_code < 500, (filters, response.status_code)
        assert response.headers["content-type"].startswith("text/html")


def test_a_huge_before_id_is_refused_not_a_server_error(
    runtime: Runtime, app_client: Callable[[], TestClient]
) -> None:
    viewer = _viewer(app_client, runtime)
    for before in (str(2**63), str(10**30)):
        response = viewer.get("/review/audit", params={"before": before})

        assert 400 <= response.status_code < 500, (before, response.status_code)


def test_a_nul_character_in_an_audit_filter_is_not_a_server_error(
    runtime: Runtime, app_client: Callable[[], TestClient]
) -> None:
    viewer = _viewer(app_client, runtime)
    for field in ("actor", "action", "subject"):
        response = viewer.get("/review/audit", params={field: "a\x00b"})

        assert response.status_code < 500, (field, response.status_code)
