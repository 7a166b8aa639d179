"""The review app in a real browser: Debian's Chromium driven by Playwright, against a real
server on 127.0.0.1. Screenshots of the queue and of an item are saved as test artefacts
(``test-artifacts/``, or ``$VIGIL_TEST_ARTIFACTS``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.images import encode, make_photo
from tests.live import live_server
from tests.receiver import wait_until, webhook_receiver
from tests.review.conftest import PASSWORD, add_user, set_site_webhook
from vigil.actions.webhooks import verify_signature
from vigil.api import create_app
from vigil.config import Settings
from vigil.review.accounts import UserRole
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.store.models import Site, Submission

CHROMIUM = Path("/usr/bin/chromium")
# The flags a closed network needs: no background fetches, no sign-in, no updates.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("VIGIL_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)

# Sharpness of what the page shows in an <img>: the variance of a Laplacian, computed in the
# browser from the pixels it actually displays.
SHARPNESS_JS = """(element) => {
  const canvas = document.createElement('canvas');
  canvas.width = element.naturalWidth; canvas.height = element.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(element, 0, 0);
  const { data, width, height } = context.getImageData(0, 0, canvas.width, canvas.height);
  const grey = (x, y) => data[(y * width + x) * 4];
  let sum = 0, squares = 0, count = 0;
  for (let y = 1; y < height - 1; y++) for (let x = 1; x < width - 1; x++) {
    const value = 4 * grey(x, y)
      - grey(x - 1, y) - grey(x + 1, y) - grey(x, y - 1) - grey(x, y + 1);
    sum += value; squares += value * value; count++;
  }
  const mean = sum / count;
  return squares / count - mean * mean;
}"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("VIGIL_REQUIRE_BROWSER"):
            pytest.fail("VIGIL_REQUIRE_BROWSER is set but /usr/bin/chromium is missing")
        pytest.skip(
            "Debian's chromium is not installed (make test installs it: apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    # New accounts are held (fills the queue); a short reveal so the test sees it blur again.
    return make_settings(policy={"hold_new_uploaders": True}, review={"reveal_seconds": 1.5})


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    with live_server(create_app(runtime)) as (host, port):
        yield f"http://{host}:{port}"


def _screen(base: str, key: str, data: bytes, uploader: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/v1/screen",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": ("upload.jpg", data, "image/jpeg")},
        data={"context": json.dumps({"uploader_id": uploader, "trust_level": "new"})},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _sign_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/review/")
    assert "/review/login" in page.url  # not signed in: sent to the login page
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/queue")


def _artefact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def test_a_moderator_reviews_held_images_in_the_browser(
    chromium: Any, server: str, runtime: Runtime, request: pytest.FixtureRequest
) -> None:
    stand_in = encode(make_photo(800, 600, seed=101), "PNG")  # stands in for a known image
    database = request.node.callspec.params.get("make_settings", "sqlite")
    key = ensure_bootstrap_key(runtime.database)
    assert key is not None
    add_user(runtime, "carol", UserRole.CHILD_SAFETY)
    add_user(runtime, "victor", UserRole.VIEWER)
    admin = {"Authorization": f"Bearer {key}"}

    with webhook_receiver() as receiver:
        set_site_webhook(runtime, receiver.url)
        first = _screen(server, key, encode(make_photo(480, 360, seed=11), "JPEG"), "u-first")
        second = _screen(server, key, encode(make_photo(480, 360, seed=12), "JPEG"), "u-second")
        # A known illegal image: its hash is in a block bank, so it is blocked, never queued.
        assert (
            httpx.post(
                f"{server}/v1/banks",
                headers=admin,
                timeout=10,
                json={"name": "known", "hash_type": "sha256", "action": "block"},
            ).status_code
            == 201
        )
        known_sha = hashlib.sha256(stand_in).hexdigest()
        assert (
            httpx.post(
                f"{server}/v1/banks/known/hashes", headers=admin, timeout=10, json=[known_sha]
            ).status_code
            == 200
        )
        known = _screen(server, key, stand_in, "u-known")
        assert known["decision"] == "block"
        assert known["review"] == "none"
        assert first["decision"] == second["decision"] == "hold"

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # "Reject as illegal?" -> yes
        _sign_in(page, server, "carol")
        assert first["submission_id"] in page.content()
        page.screenshot(path=_artefact(f"review-queue-{database}.png"), full_page=True)

        # "n" claims the oldest held item and opens it; its preview is blurred.
        page.keyboard.press("n")
        page.wait_for_url(f"**/review/items/{first['submission_id']}")
        preview = page.locator("img#preview")
        preview.wait_for()
        page.wait_for_function("document.getElementById('preview').complete")
        blurred = preview.evaluate(SHARPNESS_JS)
        assert preview.get_attribute("src").endswith("/preview")
        page.screenshot(path=_artefact(f"review-item-blurred-{database}.png"), full_page=True)

        # "v" reveals it (counted), and after a moment it is blurred again.
        page.keyboard.press("v")
        page.wait_for_selector("img#preview.revealed")
        page.wait_for_function("document.getElementById('preview').complete")
        revealed = preview.evaluate(SHARPNESS_JS)
        assert revealed > 5 * blurred, (revealed, blurred)
        assert page.inner_text("#revealed-count") == "1"
        page.screenshot(path=_artefact(f"review-item-revealed-{database}.png"), full_page=True)
        page.wait_for_selector("img#preview:not(.revealed)", timeout=10_000)

        # "a" approves; the next held item opens; "i" rejects it as illegal.
        page.keyboard.press("a")
        page.wait_for_url(f"**/review/items/{second['submission_id']}?done=approve")
        page.keyboard.press("i")
        page.wait_for_url("**/review/queue?done=illegal")

        wait_until(lambda: len(receiver.delivered()) >= 3, what="the site's webhooks")
        secret = _webhook_secret(runtime)
        events = []
        for delivery in receiver.delivered():
            assert verify_signature(secret, delivery.headers["Vigil-Signature"], delivery.body)
            events.append(json.loads(delivery.body))
        decided = {
            e["data"]["submission_id"]: e["data"]
            for e in events
            if e["type"] == "submission.decided"
        }
        assert decided[first["submission_id"]]["decision"] == "allow"
        assert decided[second["submission_id"]]["decision"] == "block"
        assert decided[second["submission_id"]]["illegal"] is True
        assert any(
            e["type"] == "uploader.suspended" and e["data"]["uploader_id"] == "u-second"
            for e in events
        )

        # The known illegal item's page carries no image at all: nothing image-like is fetched.
        images_loaded: list[str] = []
        page.on(
            "response",
            lambda r: (
                images_loaded.append(r.url)
                if r.headers.get("content-type", "").startswith("image/")
                else None
            ),
        )
        response = page.goto(f"{server}/review/items/{known['submission_id']}")
        assert response is not None
        assert response.status == 200
        html = response.body()
        assert b"<img" not in html
        assert b"\xff\xd8\xff" not in html
        assert b"\x89PNG" not in html
        assert b"data:image" not in html
        assert b"/preview" not in html
        assert images_loaded == []
        assert "Known illegal image: never shown" in page.inner_text("#withheld")
        reveal = page.request.post(
            f"{server}/review/items/{known['submission_id']}/reveal",
            headers={"X-CSRF-Token": page.get_attribute("body", "data-csrf")},
        )
        assert reveal.status == 403
        assert not reveal.headers.get("content-type", "").startswith("image/")

        # A form sent without its CSRF token is refused, and changes nothing.
        third = _screen(server, key, encode(make_photo(480, 360, seed=13), "JPEG"), "u-third")
        forged = page.request.post(
            f"{server}/review/items/{third['submission_id']}/decision", form={"decision": "approve"}
        )
        assert forged.status == 403
        assert _decision(runtime, third["submission_id"]) == "hold"

        page.goto(f"{server}/review/status")
        assert page.locator("#hourly-chart rect").count() >= 1
        page.screenshot(path=_artefact(f"review-status-{database}.png"), full_page=True)
        context.close()

        # A viewer sees the item but has no decision buttons, and a decision is refused.
        viewer = chromium.new_context()
        page = viewer.new_page()
        _sign_in(page, server, "victor")
        page.goto(f"{server}/review/items/{third['submission_id']}")
        assert page.locator("button[name=decision]").count() == 0
        assert page.locator("img").count() == 0
        refused = page.request.post(
            f"{server}/review/items/{third['submission_id']}/decision",
            form={"decision": "approve", "csrf_token": page.get_attribute("body", "data-csrf")},
        )
        assert refused.status == 403
        assert _decision(runtime, third["submission_id"]) == "hold"
        viewer.close()


def _webhook_secret(runtime: Runtime) -> str:
    with runtime.database.session() as session:
        site = session.query(Site).filter_by(name="default").one()
        assert site.webhook_secret is not None
        return site.webhook_secret


def _decision(runtime: Runtime, submission_id: str) -> str:
    with runtime.database.session() as session:
        submission = session.get(Submission, submission_id)
        assert submission is not None
        return submission.decision
