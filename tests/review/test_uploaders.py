"""The uploader page: an uploader's history, the uploaders who posted near-identical images, and
the clean-up that rejects, takes down and suspends them in one action."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance
from sqlalchemy import select, update

from tests.api.conftest import add_hashes, create_bank, screen, site_key
from tests.images import encode, make_photo
from tests.receiver import wait_until, webhook_receiver
from tests.review.conftest import (
    add_user,
    csrf_token,
    held_upload,
    set_site_webhook,
    sign_in,
    signed_in,
)
from vigil.config import Settings
from vigil.policy import CHILD_SAFETY, Priority
from vigil.review.accounts import UserRole
from vigil.review.uploaders import related_uploaders
from vigil.runtime import Runtime
from vigil.store.models import Site, Submission, UploaderSuspension, WebhookDelivery
from vigil.store.sites import Role
from vigil.store.types import utcnow

FAST_WEBHOOKS = {"poll_seconds": 0.05, "retry_base_seconds": 0.2, "retry_max_seconds": 1.0}
_CLEAN_UP_FORM = 'action="/review/uploader/clean-up"'
# One row of the related-uploaders table a moderator sees: id, near-identical count, distance.
_RELATED_ROW = re.compile(
    r'<input type="checkbox" name="related" value="([^"]+)" checked></td>\s*'
    r"<td><a [^>]*>[^<]*</a></td>\s*<td>(\d+)</td><td>(\d+)</td>"
)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """As the review conftest's, with webhooks delivered within a moment."""
    return make_settings(policy={"hold_new_uploaders": True}, webhooks=FAST_WEBHOOKS)


# --- helpers ---------------------------------------------------------------------------------


def _photo(seed: int) -> Image.Image:
    return make_photo(400, 300, seed=seed)


def _jpeg(seed: int) -> bytes:
    return encode(_photo(seed), "JPEG")


def _upload(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    uploader: str,
    *,
    trust: str = "new",
    ref: str | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {"uploader_id": uploader, "trust_level": trust}
    if ref is not None:
        context["ref"] = ref
    response = screen(client, headers, data, context)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _allowed_upload(
    client: TestClient, headers: dict[str, str], seed: int, uploader: str, ref: str
) -> str:
    body = _upload(client, headers, _jpeg(seed), uploader, trust="trusted", ref=ref)
    assert body["decision"] == "allow", body
    return str(body["submission_id"])


def _moderator(app_client: Callable[[], TestClient], runtime: Runtime, name: str) -> TestClient:
    add_user(runtime, name, UserRole.MODERATOR)
    browser = app_client()
    assert sign_in(browser, name).status_code == 200
    return browser


def _uploader_page(browser: TestClient, uploader: str, site: str = "default") -> Any:
    return browser.get("/review/uploader", params={"site": site, "id": uploader})


def _related_rows(page: str) -> dict[str, tuple[int, int]]:
    return {found[0]: (int(found[1]), int(found[2])) for found in _RELATED_ROW.findall(page)}


def _submission(runtime: Runtime, submission_id: str) -> Submission:
    with runtime.database.session() as session:
        found = session.get(Submission, submission_id)
        assert found is not None
        return found


def _distance(first: str, second: str) -> int:
    return (int(first, 16) ^ int(second, 16)).bit_count()


def _pdq(body: dict[str, Any]) -> str:
    return str(body["hashes"]["pdq"][0]["hash"])


def _backdate(runtime: Runtime, submission_id: str, age: timedelta) -> None:
    with runtime.database.session() as session:
        session.execute(
            update(Submission)
            .where(Submission.id == submission_id)
            .values(created_at=utcnow() - age)
        )


# --- the uploader's history ------------------------------------------------------------------


def test_the_page_lists_every_submission_of_the_uploader_with_counts(
    runtime: Runtime,
    app_client: Callable[[], TestClient],
    site_headers: dict[str, str],
) -> None:
    api = app_client()
    blocked_image = _jpeg(3)
    create_bank(api, site_headers, "known-bad", "sha256", "block")
    sha256 = screen(api, site_headers, blocked_image).json()["hashes"]["sha256"]
    add_hashes(api, site_headers, "known-bad", [sha256])

    held = [held_upload(api, site_headers, seed=seed, uploader="u1") for seed in (1, 2)]
    allowed = _allowed_upload(api, site_headers, 4, "u1", ref="post-4")
    blocked = _upload(api, site_headers, blocked_image, "u1", trust="trusted")
    assert blocked["decision"] == "block"
    # The same uploader id on another site is someone else.
    _, other_headers = site_key(runtime, "other", Role.SCREEN)
    elsewhere = held_upload(api, other_headers, seed=5, uploader="u1")
    someone_else = held_upload(api, site_headers, seed=6, uploader="u9")

    moderator = _moderator(app_client, runtime, "mona")
    page = _uploader_page(moderator, "u1")

    assert page.status_code == 200, page.text
    text = page.text
    for submission_id in [*held, allowed, blocked["submission_id"]]:
        assert f"/review/items/{submission_id}" in text
    assert elsewhere not in text
    assert someone_else not in text
    assert "4 submissions · 2 awaiting review · 1 published" in text
    assert "known illegal" in text  # the bank-matched one is marked
    assert _CLEAN_UP_FORM in text

    # The other site's u1 has a page of its own.
    other_page = _uploader_page(moderator, "u1", site="other")
    assert other_page.status_code == 200
    assert elsewhere in other_page.text
    assert "1 submissions · 1 awaiting review · 0 published" in other_page.text


def test_an_unknown_uploader_is_a_404_page(
    runtime: Runtime,
    app_client: Callable[[], TestClient],
    site_headers: dict[str, str],
) -> None:
    held_upload(app_client(), site_headers, seed=1, uploader="u1")
    moderator = _moderator(app_client, runtime, "mona")

    for params in ({"site": "default", "id": "nobody"}, {"site": "no-such-site", "id": "u1"}):
        page = moderator.get("/review/uploader", params=params)
        assert page.status_code == 404, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text


def test_a_viewer_sees_the_uploader_but_no_clean_up_form(
    runtime: Runtime,
    app_client: Callable[[], TestClient],
    site_headers: dict[str, str],
) -> None:
    api = app_client()
    image = _jpeg(1)
    held_upload(api, site_headers, seed=1, uploader="u1", image=image)
    held_upload(api, site_headers, seed=1, uploader="u2", image=image)
    add_user(runtime, "vera", UserRole.VIEWER)
    viewer = app_client()
    sign_in(viewer, "vera")

    page = _uploader_page(viewer, "u1")

    assert page.status_code == 200, page.text
    assert "1 submissions · 1 awaiting review · 0 published" in page.text
    assert _CLEAN_UP_FORM not in page.text
    assert 'name="confirm"' not in page.text
    assert "<li>u2 (1)</li>" in page.text  # the related uploader, without the form


# --- related uploaders -----------------------------------------------------------------------


def test_uploaders_of_the_same_or_near_identical_images_are_related(
    runtime: Runtime,
    app_client: Callable[[], TestClient],
    site_headers: dict[str, str],
) -> None:
    api = app_client()
    first, second = _photo(10), _photo(11)
    first_jpeg, second_jpeg = encode(first, "JPEG"), encode(second, "JPEG")
    mine = [_pdq(_upload(api, site_headers, data, "u1")) for data in (first_jpeg, second_jpeg)]

    # u2 posted the very same file.
    _upload(api, site_headers, first_jpeg, "u2")
    # u3 posted copies: re-encoded, slightly resized, brightness-shifted.
    copies = [
        encode(first, "PNG"),
        encode(second.resize((380, 285)), "JPEG", quality=80),
        encode(ImageEnhance.Brightness(second).enhance(1.08), "JPEG"),
    ]
    u3_hashes = [_pdq(_upload(api, site_headers, data, "u3")) for data in copies]
    u3_distances = [min(_distance(theirs, own) for own in mine) for theirs in u3_hashes]
    assert max(u3_distances) > 0  # not all exact: near-identical copies
    assert max(u3_distances) <= runtime.settings.review.related_pdq_distance
    u3_closest = min(u3_distances)
    # u4's images are unrelated.
    for seed in (12, 13):
        _upload(api, site_headers, _jpeg(seed), "u4")
    # u5 posted the same file, but longer ago than the window.
    old = _upload(api, site_headers, first_jpeg, "u5")["submission_id"]
    window = runtime.settings.review.related_window_days
    _backdate(runtime, old, timedelta(days=window, hours=1))
    # u6 posted the same file on another site.
    _, other_headers = site_key(runtime, "other", Role.SCREEN)
    _upload(api, other_headers, first_jpeg, "u6")

    moderator = _moderator(app_client, runtime, "mona")
    page = _uploader_page(moderator, "u1")

    assert page.status_code == 200, page.text
    rows = _related_rows(page.text)
    assert rows == {"u3": (3, u3_closest), "u2": (1, 0)}
    # Most shared first.
    assert page.text.index('value="u3"') < page.text.index('value="u2"')


def test_the_window_is_the_setting_not_a_fixed_month(
    make_settings: Callable[..., Settings],
    make_runtime: Callable[[Settings], Runtime],
) -> None:
    runtime = make_runtime(make_settings(review={"related_window_days": 2}))
    with runtime.database.session() as session:
        site = Site(name="default")
        session.add(site)
        session.flush()
        now = utcnow()
        shared = "ab" * 32
        mine = _submission_row(site.id, "u1", [(_random_hex(random.Random(1)), 100)], now)
        mine.sha256 = shared
        recent = _submission_row(site.id, "u2", [], now - timedelta(days=1, hours=23))
        recent.sha256 = shared
        stale = _submission_row(site.id, "u3", [], now - timedelta(days=2, minutes=1))
        stale.sha256 = shared
        session.add_all([mine, recent, stale])
        session.flush()
        found = related_uploaders(session, site.id, "u1", [mine], runtime.settings, now)
    assert [(one.uploader_id, one.shared, one.closest) for one in found] == [("u2", 1, 0)]


def _random_hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _flip_bits(value: str, count: int, rng: random.Random) -> str:
    number = int(value, 16)
    for bit in rng.sample(range(256), count):
        number ^= 1 << bit
    return f"{number:064x}"


def _submission_row(
    site_id: int, uploader: str, pdq: list[tuple[str, int]], created_at: Any
) -> Submission:
    return Submission(
        id=str(uuid.uuid4()),
        site_id=site_id,
        uploader_id=uploader,
        context={"uploader_id": uploader},
        sha256=uuid.uuid4().hex * 2,
        md5=uuid.uuid4().hex,
        sha1=uuid.uuid4().hex + "00000000",
        pdq=[
            {"frame": frame, "hash": value, "quality": quality, "background": None}
            for frame, (value, quality) in enumerate(pdq)
        ],
        image_format="JPEG",
        width=400,
        height=300,
        frame_count=max(len(pdq), 1),
        frames_screened=max(len(pdq), 1),
        byte_size=1000,
        initial_decision="hold",
        decision="hold",
        reasons=[],
        review_state="pending",
        created_at=created_at,
    )


def test_related_uploaders_agrees_with_a_brute_force_count(runtime: Runtime) -> None:
    """The vectorised distances against a plain loop over every pair, with more hashes than
    one comparison slice (4096) holds."""
    rng = random.Random(20261122)
    settings = runtime.settings
    limit = settings.review.related_pdq_distance
    floor = settings.matching.pdq_quality_floor
    now = utcnow()
    mine_hashes = [_random_hex(rng) for _ in range(6)]
    with runtime.database.session() as session:
        site = Site(name="default")
        other_site = Site(name="other")
        session.add_all([site, other_site])
        session.flush()
        own = [
            _submission_row(site.id, "me", [(value, 100)], now - timedelta(hours=index))
            for index, value in enumerate(mine_hashes)
        ]
        # One own submission with a featureless frame: its hash is never compared.
        featureless = _random_hex(rng)
        own.append(_submission_row(site.id, "me", [(featureless, floor - 1)], now))
        rows: list[Submission] = []
        for index in range(4600):
            uploader = f"other-{index % 40:02d}"
            frames = []
            for _ in range(rng.choice((1, 1, 1, 2))):
                kind = rng.random()
                if kind < 0.03:  # a near copy of one of mine, sometimes just past the limit
                    value = _flip_bits(rng.choice(mine_hashes), rng.randint(0, limit + 6), rng)
                elif kind < 0.04:  # a near copy of the featureless frame
                    value = _flip_bits(featureless, rng.randint(0, 4), rng)
                else:
                    value = _random_hex(rng)
                quality = 100 if rng.random() > 0.05 else floor - 10
                frames.append((value, quality))
            rows.append(_submission_row(site.id, uploader, frames, now - timedelta(minutes=index)))
        # The very same file as one of mine, whatever its hashes.
        same_file = _submission_row(site.id, "copier", [(_random_hex(rng), 100)], now)
        same_file.sha256 = own[0].sha256
        rows.append(same_file)
        # Near copies from another site never count.
        rows.append(
            _submission_row(
                other_site.id, "elsewhere", [(_flip_bits(mine_hashes[0], 1, rng), 100)], now
            )
        )
        session.add_all([*own, *rows])
        session.flush()

        found = related_uploaders(session, site.id, "me", own, settings, now)

    mine_good = [
        entry["hash"] for submission in own for entry in submission.pdq if entry["quality"] >= floor
    ]
    own_files = {submission.sha256 for submission in own}
    expected: dict[str, list[int]] = {}
    for row in rows:
        if row.site_id != site.id:
            continue
        assert row.uploader_id is not None
        if row.sha256 in own_files:
            expected.setdefault(row.uploader_id, []).append(0)
            continue
        distances = [
            _distance(entry["hash"], own_hash)
            for entry in row.pdq
            if entry["quality"] >= floor
            for own_hash in mine_good
        ]
        if distances and min(distances) <= limit:
            expected.setdefault(row.uploader_id, []).append(min(distances))
    baseline = sorted(
        ((uploader, len(found_), min(found_)) for uploader, found_ in expected.items()),
        key=lambda item: (-item[1], item[2], item[0]),
    )
    assert len(baseline) > 10  # the data really has related uploaders, at several distances
    assert {closest for _, _, closest in baseline} != {0}
    assert [(one.uploader_id, one.shared, one.closest) for one in found] == baseline


# --- clean-up --------------------------------------------------------------------------------


def _events(receiver: Any) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in receiver.delivered()]


def _of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == event_type]


def _outbox(runtime: Runtime) -> list[WebhookDelivery]:
    with runtime.database.session() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _all_delivered(runtime: Runtime, receiver: Any) -> bool:
    deliveries = _outbox(runtime)
    return all(d.status == "delivered" for d in deliveries) and len(receiver.delivered()) == len(
        deliveries
    )


def test_clean_up_rejects_takes_down_and_suspends(
    runtime: Runtime,
    app_client: Callable[[], TestClient],
    site_headers: dict[str, str],
) -> None:
    api = app_client()
    blocked_image = _jpeg(9)
    create_bank(api, site_headers, "known-bad", "sha256", "block")
    add_hashes(
        api,
        site_headers,
        "known-bad",
        [screen(api, site_headers, blocked_image).json()["hashes"]["sha256"]],
    )
    u1_pending = [held_upload(api, site_headers, seed=seed, uploader="u1") for seed in (1, 2)]
    u1_published = _allowed_upload(api, site_headers, 3, "u1", ref="post-3")
    u1_blocked = _upload(api, site_headers, blocked_image, "u1", trust="trusted")
    assert u1_blocked["decision"] == "block"
    # The known image suspends u1 at once; the clean-up suspends u2.
    assert u1_blocked["uploader_suspended"] is True
    u2_pending = held_upload(api, site_headers, seed=4, uploader="u2")
    u2_published = [
        _allowed_upload(api, site_headers, seed, "u2", ref=f"post-{seed}") for seed in (5, 6)
    ]
    u3_pending = held_upload(api, site_headers, seed=7, uploader="u3")
    u4_published = _allowed_upload(api, site_headers, 8, "u4", ref="post-8")
    # Another site's u1 is someone else.
    _, other_headers = site_key(runtime, "other", Role.SCREEN)
    elsewhere = held_upload(api, other_headers, seed=1, uploader="u1")

    moderator = _moderator(app_client, runtime, "mona")
    token = csrf_token(_uploader_page(moderator, "u1").text)
    form = {
        "csrf_token": token,
        "site": "default",
        "uploader": "u1",
        "related": ["u2"],
        "note": "coordinated attack",
    }

    with webhook_receiver() as receiver:
        set_site_webhook(runtime, receiver.url)

        # Without the confirmation nothing happens.
        refused = moderator.post("/review/uploader/clean-up", data=form, follow_redirects=False)
        assert refused.status_code == 400, refused.text
        for submission_id in [*u1_pending, u2_pending]:
            assert _submission(runtime, submission_id).review_state == "pending"
        with runtime.database.session() as session:
            before = session.scalars(select(UploaderSuspension)).all()
        assert [(row.uploader_id, row.suspended_by) for row in before] == [("u1", "vigil")]
        assert _outbox(runtime) == []

        done = moderator.post(
            "/review/uploader/clean-up",
            data={**form, "confirm": "true"},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        wait_until(lambda: len(receiver.delivered()) >= 6, what="the clean-up's six events")
        wait_until(lambda: _all_delivered(runtime, receiver), what="every event delivered")
        events = _events(receiver)

        # Pending items are rejected, by this moderator, with the reason.
        for submission_id in [*u1_pending, u2_pending]:
            rejected = _submission(runtime, submission_id)
            assert (rejected.decision, rejected.review_state) == ("block", "decided")
            assert rejected.decided_by == "user:mona"
            assert rejected.decision_note == "coordinated attack"
        # Everything else is left as it was.
        untouched = _submission(runtime, u1_blocked["submission_id"])
        assert (untouched.decision, untouched.review_state) == ("block", "none")
        assert untouched.decided_at is None
        assert untouched.decided_by is None
        for submission_id in (u1_published, *u2_published, u4_published):
            kept = _submission(runtime, submission_id)
            assert (kept.decision, kept.decided_by) == ("allow", None)
        assert _submission(runtime, u3_pending).review_state == "pending"
        assert _submission(runtime, elsewhere).review_state == "pending"

        decided = _of_type(events, "submission.decided")
        assert sorted(event["data"]["submission_id"] for event in decided) == sorted(
            [*u1_pending, u2_pending]
        )
        assert {event["data"]["decision"] for event in decided} == {"block"}
        assert {event["data"]["note"] for event in decided} == {"coordinated attack"}

        takedowns = {
            event["data"]["uploader_id"]: event["data"]
            for event in _of_type(events, "uploader.takedown_requested")
        }
        assert len(_of_type(events, "uploader.takedown_requested")) == 2
        assert takedowns["u1"]["submissions"] == [{"submission_id": u1_published, "ref": "post-3"}]
        assert sorted(takedowns["u2"]["submissions"], key=lambda item: item["ref"]) == [
            {"submission_id": u2_published[0], "ref": "post-5"},
            {"submission_id": u2_published[1], "ref": "post-6"},
        ]
        assert {data["reason"] for data in takedowns.values()} == {"coordinated attack"}

        suspended = _of_type(events, "uploader.suspended")
        assert [event["data"]["uploader_id"] for event in suspended] == ["u2"]
        assert len(events) == 6

        # The page says what was done.
        page = moderator.get(done.headers["location"])
        assert page.status_code == 200
        assert "rejected 3, asked to take down 3, suspended 1" in page.text
        assert "suspended</span>" in page.text

        # Suspended uploaders' next images are blocked, however trusted; others' are not.
        for uploader in ("u1", "u2"):
            after = _upload(api, site_headers, _jpeg(20), uploader, trust="trusted")
            assert after["decision"] == "block", after
            assert "uploader_suspended" in [reason["code"] for reason in after["reasons"]]
        assert _upload(api, site_headers, _jpeg(20), "u3", trust="trusted")["decision"] == "allow"
        # On another site, the same id is not suspended.
        assert _upload(api, other_headers, _jpeg(20), "u1", trust="trusted")["decision"] == "allow"

        # A second clean-up does not suspend (or tell the site) again.
        again = moderator.post(
            "/review/uploader/clean-up",
            data={**form, "confirm": "true"},
            follow_redirects=False,
        )
        assert again.status_code == 303, again.text
        assert "suspended 0" in moderator.get(again.headers["location"]).text
        wait_until(lambda: _all_delivered(runtime, receiver), what="every event delivered")
        events = _events(receiver)
        assert len(_of_type(events, "uploader.suspended")) == 1
        assert len(_of_type(events, "submission.decided")) == 3

    with runtime.database.session() as session:
        suspensions = session.scalars(select(UploaderSuspension)).all()
    assert sorted((row.uploader_id, row.reason) for row in suspensions) == [
        ("u1", "uploaded an image matching block bank(s) known-bad"),
        ("u2", "coordinated attack"),
    ]


def test_clean_up_needs_a_moderator_and_the_csrf_token(
    runtime: Runtime,
    app_client: Callable[[], TestClient],
    site_headers: dict[str, str],
) -> None:
    pending = held_upload(app_client(), site_headers, seed=1, uploader="u1")
    add_user(runtime, "vera", UserRole.VIEWER)
    viewer = app_client()
    sign_in(viewer, "vera")
    moderator = _moderator(app_client, runtime, "mona")
    form = {"site": "default", "uploader": "u1", "confirm": "true"}

    as_viewer = viewer.post(
        "/review/uploader/clean-up",
        data={**form, "csrf_token": csrf_token(_uploader_page(viewer, "u1").text)},
        follow_redirects=False,
    )
    without_token = moderator.post("/review/uploader/clean-up", data=form, follow_redirects=False)

    assert as_viewer.status_code == 403
    assert without_token.status_code == 403
    assert _submission(runtime, pending).review_state == "pending"
    with runtime.database.session() as session:
        assert session.scalars(select(UploaderSuspension)).all() == []


def test_uploader_ids_are_shown_as_text(
    runtime: Runtime,
    app_client: Callable[[], TestClient],
    site_headers: dict[str, str],
) -> None:
    """Uploader ids are the site's: whatever they hold is shown as text, never as markup."""
    hostile = '"><script>alert(1)</script>'
    held_upload(app_client(), site_headers, seed=1, uploader=hostile)
    moderator = _moderator(app_client, runtime, "mona")

    page = _uploader_page(moderator, hostile)

    assert page.status_code == 200, page.text
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_a_nul_character_in_an_uploader_or_site_is_not_a_server_error(
    runtime: Runtime,
    app_client: Callable[[], TestClient],
    site_headers: dict[str, str],
) -> None:
    held_upload(app_client(), site_headers, seed=1, uploader="u1")
    moderator = _moderator(app_client, runtime, "mona")
    token = csrf_token(_uploader_page(moderator, "u1").text)

    for params in ({"site": "default", "id": "u\x001"}, {"site": "def\x00ault", "id": "u1"}):
        page = moderator.get("/review/uploader", params=params)
        assert 400 <= page.status_code < 500, (params, page.status_code)
    for form in (
        {"site": "def\x00ault", "uploader": "u1"},
        {"site": "default", "uploader": "u\x001"},
        {"site": "default", "uploader": "u1", "related": ["u\x002"]},
    ):
        response = moderator.post(
            "/review/uploader/clean-up",
            data={**form, "confirm": "true", "csrf_token": token},
            follow_redirects=False,
        )
        assert 400 <= response.status_code < 500, (form, response.status_code)
    with runtime.database.session() as session:
        assert session.scalars(select(UploaderSuspension)).all() == []


def test_a_clean_up_leaves_items_that_may_show_a_child_to_the_child_safety_team(
    runtime: Runtime, app_client: Callable[[], TestClient], site_headers: dict[str, str]
) -> None:
    ordinary = held_upload(app_client(), site_headers, seed=41, uploader="u1")
    urgent = held_upload(app_client(), site_headers, seed=42, uploader="u1")
    with runtime.database.session() as session:
        row = session.get(Submission, urgent)
        assert row is not None
        row.priority = Priority.URGENT.rank
        row.flags = [CHILD_SAFETY]
    moderator = _moderator(app_client, runtime, "mona")
    token = csrf_token(_uploader_page(moderator, "u1").text)

    done = moderator.post(
        "/review/uploader/clean-up",
        data={"csrf_token": token, "site": "default", "uploader": "u1", "confirm": "true"},
    )

    assert done.status_code == 200, done.text
    assert "left 1 for the child-safety team" in done.text
    with runtime.database.session() as session:
        assert session.get_one(Submission, ordinary).decision == "block"
        left = session.get_one(Submission, urgent)
        assert (left.decision, left.review_state) == ("hold", "pending")


def test_the_child_safety_team_can_lift_a_suspension_and_the_site_is_told(
    runtime: Runtime, app_client: Callable[[], TestClient], site_headers: dict[str, str]
) -> None:
    set_site_webhook(runtime, "http://127.0.0.1:9/never-called")
    held_upload(app_client(), site_headers, seed=51, uploader="u1")
    moderator = _moderator(app_client, runtime, "mona")
    token = csrf_token(_uploader_page(moderator, "u1").text)
    moderator.post(
        "/review/uploader/clean-up",
        data={"csrf_token": token, "site": "default", "uploader": "u1", "confirm": "true"},
    )
    form = {"site": "default", "uploader": "u1"}

    refused = moderator.post("/review/uploader/reinstate", data={**form, "csrf_token": token})
    team = signed_in(runtime, app_client, "cara", UserRole.CHILD_SAFETY)
    page = team.get("/review/uploader?site=default&id=u1")
    assert "Lift suspension" in page.text
    lifted = team.client.post("/review/uploader/reinstate", data={**form, "csrf_token": team.csrf})

    assert refused.status_code == 403
    assert lifted.status_code == 200
    assert "suspension lifted" in lifted.text
    # Screened as usual again: a new account's image is held, not blocked as suspended.
    held_upload(app_client(), site_headers, seed=52, uploader="u1")
    with runtime.database.session() as session:
        events = session.scalars(select(WebhookDelivery.event_type)).all()
    assert events.count("uploader.suspended") == 1
    assert events.count("uploader.reinstated") == 1
