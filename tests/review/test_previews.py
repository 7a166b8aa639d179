"""What a moderator's browser is sent of a held image: a blurred greyscale preview, a clear
picture only on a counted reveal, nothing at all of a known illegal image or in no-images mode."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, update

from tests.api.conftest import add_hashes, create_bank, pdq_of, screen
from tests.images import encode, make_photo
from tests.review.conftest import (
    Browsers,
    held_upload,
    signed_in,
)
from vigil.evidence.vault import find_item_for_submission
from vigil.review.accounts import UserRole
from vigil.runtime import Runtime
from vigil.store.models import AuditEvent, Exposure, Submission, User
from vigil.store.types import utcnow

ROLES = (UserRole.VIEWER, UserRole.MODERATOR, UserRole.CHILD_SAFETY, UserRole.ADMIN)
# How an image could reach a page: raw bytes, base64 (as in a data: address), or a link.
_IMAGE_TRACES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"data:image", b"<img")
_IMAGE_TRACES_BASE64 = (
    base64.b64encode(b"\xff\xd8\xff")[:4],  # "/9j/"
    base64.b64encode(b"\x89PNG\r\n\x1a\n")[:8],  # "iVBORw0K"
)


def picture(response: Any) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "no-store"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    image.load()
    return image


def is_greyscale(image: Image.Image) -> bool:
    if image.mode == "L":
        return True
    channels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool(
        np.abs(channels[..., 0] - channels[..., 1]).max() <= 2
        and np.abs(channels[..., 1] - channels[..., 2]).max() <= 2
    )


def sharpness(image: Image.Image) -> float:
    """Variance of the Laplacian: high for detail and edges, near zero for a blur."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    laplacian = (
        4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    )
    return float(laplacian.var())


def distance(image: Image.Image, original: Image.Image) -> float:
    """Mean absolute difference of the grey levels, at the original's size."""
    first = np.asarray(image.convert("L").resize(original.size), dtype=np.float64)
    second = np.asarray(original.convert("L"), dtype=np.float64)
    return float(np.abs(first - second).mean())


def shows_no_image(response: Any) -> None:
    assert response.status_code == 200, response.text
    assert "<img" not in response.text
    assert "/preview" not in response.text
    assert "/reveal" not in response.text
    for trace in (*_IMAGE_TRACES, *_IMAGE_TRACES_BASE64):
        assert trace not in response.content, trace


def exposures(runtime: Runtime, name: str | None = None) -> int:
    with runtime.database.session() as session:
        query = select(func.count()).select_from(Exposure)
        if name is not None:
            query = query.join(User, User.id == Exposure.user_id).where(User.name == name)
        return int(session.scalar(query) or 0)


def revealed_count(page: str) -> int:
    found = re.search(r'<strong id="revealed-count">(\d+)</strong>', page)
    assert found is not None, "the header shows no reveal count"
    return int(found.group(1))


# --- the preview and the reveal ----------------------------------------------------------------


def test_the_preview_is_greyscale_and_blurred_and_the_reveal_is_clear(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    photo = make_photo(400, 300, seed=1)
    item = held_upload(app_client(), site_headers, seed=0, image=encode(photo, "JPEG"))
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    page = alice.item(item)
    assert f'<img id="preview" src="/review/items/{item}/preview"' in page.text

    blurred = picture(alice.preview(item))
    clear = picture(alice.reveal(item))

    assert blurred.size == clear.size == photo.size
    assert is_greyscale(blurred)
    assert is_greyscale(clear), "revealed images are greyscale unless configured otherwise"
    assert sharpness(clear) > 100
    assert sharpness(blurred) < sharpness(clear) / 20
    assert distance(clear, photo) < 6, "the reveal is the picture itself"
    assert distance(blurred, photo) > 3 * distance(clear, photo)
    assert distance(blurred, photo) > 8


@pytest.mark.parametrize("settings", [{"reveal_in_colour": True}], indirect=True, ids=["colour"])
def test_revealing_in_colour_is_a_setting_and_the_preview_stays_grey(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    photo = make_photo(400, 300, seed=2)
    item = held_upload(app_client(), site_headers, seed=0, image=encode(photo, "JPEG"))
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    alice.item(item)

    blurred = picture(alice.preview(item))
    clear = picture(alice.reveal(item))

    assert is_greyscale(blurred)
    assert clear.mode == "RGB"
    assert not is_greyscale(clear)
    colours = np.asarray(clear, dtype=np.float64)
    expected = np.asarray(photo, dtype=np.float64)
    assert np.abs(colours - expected).mean() < 8, "the colours are the picture's own"
    assert sharpness(blurred) < sharpness(clear) / 20


def test_a_transparent_png_is_previewed_on_a_neutral_grey(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    # The left half is fully transparent over white pixels; the right half is a photo.
    rgba = make_photo(400, 300, seed=3).convert("RGBA")
    pixels = np.asarray(rgba).copy()
    pixels[:, :200] = (255, 255, 255, 0)
    png = encode(Image.fromarray(pixels, "RGBA"), "PNG")
    item = held_upload(app_client(), site_headers, seed=0, image=png)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    alice.item(item)

    blurred = np.asarray(picture(alice.preview(item)).convert("L"), dtype=np.float64)
    clear = np.asarray(picture(alice.reveal(item)).convert("L"), dtype=np.float64)

    assert blurred.shape == clear.shape == (300, 400)
    # Far from the photo, the transparent part is the grey backdrop, not the hidden white.
    assert abs(blurred[100:200, 20:60].mean() - 128) < 8
    assert abs(clear[:, :180].mean() - 128) < 4
    assert clear[:, 220:].std() > 20, "the visible half is the photo"


# --- reveals are deliberate and counted --------------------------------------------------------


@pytest.mark.parametrize("settings", [{"exposure_soft_limit": 2}], indirect=True, ids=["limit2"])
def test_a_reveal_needs_the_claim_and_is_counted_towards_a_break(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    api = app_client()
    first = held_upload(api, site_headers, seed=11)
    second = held_upload(api, site_headers, seed=12)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    bob = signed_in(runtime, app_client, "bob", UserRole.MODERATOR)
    opened = alice.item(first)
    assert revealed_count(opened.text) == 0
    assert "Please take a break" not in opened.text

    # Another moderator has it: no reveal, and nothing counted.
    assert bob.item(first).status_code == 200
    assert 'id="reveal"' not in bob.item(first).text
    assert bob.reveal(first).status_code == 403
    assert exposures(runtime) == 0
    # A reveal without the session's CSRF token is refused too.
    forged = alice.client.post(f"/review/items/{first}/reveal")
    assert forged.status_code == 403
    assert exposures(runtime) == 0

    assert 'id="reveal"' in opened.text
    picture(alice.reveal(first))
    after_one = alice.item(first).text
    assert exposures(runtime, "alice") == 1
    assert revealed_count(after_one) == 1
    assert "Please take a break" not in after_one
    with runtime.database.session() as session:
        events = session.execute(
            select(AuditEvent.actor, AuditEvent.subject).where(
                AuditEvent.action == "submission.revealed"
            )
        ).all()
    assert [tuple(event) for event in events] == [("user:alice", first)]

    picture(alice.reveal(second))  # revealing opens (claims) the item if no one has it
    at_limit = alice.item(second).text
    assert exposures(runtime, "alice") == 2
    assert revealed_count(at_limit) == 2
    assert "Please take a break" in at_limit
    assert '<div class="break" role="status">' in alice.client.get("/review/queue").text
    assert revealed_count(bob.item(second).text) == 0, "each person's count is their own"

    # Reveals from an earlier shift no longer count.
    earlier = utcnow() - timedelta(hours=runtime.settings.review.shift_hours, minutes=5)
    with runtime.database.session() as session:
        session.execute(update(Exposure).values(at=earlier))
    next_shift = alice.item(second).text
    assert revealed_count(next_shift) == 0
    assert "Please take a break" not in next_shift


# --- what is never shown -----------------------------------------------------------------------


def test_an_image_a_block_bank_knows_is_never_shown_to_anyone(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    api = app_client()
    exact_copy = encode(make_photo(400, 300, seed=21), "PNG")
    near_original = make_photo(400, 300, seed=22)
    create_bank(api, site_headers, "known-exact", "sha256", "block")
    add_hashes(api, site_headers, "known-exact", [hashlib.sha256(exact_copy).hexdigest()])
    create_bank(api, site_headers, "known-pdq", "pdq", "block")
    add_hashes(
        api, site_headers, "known-pdq", [pdq_of(api, site_headers, encode(near_original, "PNG"))]
    )
    known = []
    for data in (exact_copy, encode(near_original, "JPEG", quality=70)):
        body = screen(api, site_headers, data, {"uploader_id": "u9", "trust_level": "new"}).json()
        assert (body["decision"], body["review"]) == ("block", "none"), body
        known.append(str(body["submission_id"]))
    with runtime.database.session() as session:
        for item in known:
            row = session.get_one(Submission, item)
            assert row.known_illegal
            # Kept only sealed in the evidence vault: the review app has no copy to show.
            assert row.image_path is None
            assert find_item_for_submission(session, item) is not None

    for role in ROLES:
        person = signed_in(runtime, app_client, f"{role.value}-user", role)
        for item in known:
            page = person.item(item)
            shows_no_image(page)
            assert "Known illegal image: never shown." in page.text
            assert person.preview(item).status_code == 403, role
            assert person.reveal(item).status_code == 403, role
    assert exposures(runtime) == 0


def test_an_image_rejected_as_illegal_is_never_shown_again(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    item = held_upload(app_client(), site_headers, seed=31)
    cass = signed_in(runtime, app_client, "cass", UserRole.CHILD_SAFETY)
    cass.item(item)
    assert cass.preview(item).status_code == 200
    with runtime.database.session() as session:
        plain_copy = session.get_one(Submission, item).image_path
    assert plain_copy is not None
    assert runtime.images.exists(plain_copy)
    assert cass.post(f"/review/items/{item}/decision", decision="illegal").status_code == 303

    # The plain copy is gone; the image is sealed in the vault, where nothing serves it.
    assert not runtime.images.exists(plain_copy)
    with runtime.database.session() as session:
        assert session.get_one(Submission, item).image_path is None
        evidence = find_item_for_submission(session, item)
        assert evidence is not None
        assert evidence.cause == "confirmed_illegal"
    people = [cass] + [
        signed_in(runtime, app_client, f"{role.value}-user", role)
        for role in ROLES
        if role is not UserRole.CHILD_SAFETY
    ]
    for person in people:
        shows_no_image(person.item(item))
        assert "Known illegal image: never shown." in person.item(item).text
        assert person.preview(item).status_code == 403, person.name
        assert person.reveal(item).status_code == 403, person.name
    assert exposures(runtime) == 0


def test_no_images_mode_shows_no_picture_until_it_is_turned_off(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    item = held_upload(app_client(), site_headers, seed=41)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    back = f"/review/items/{item}"
    assert "<img" in alice.item(item).text

    switched_off = alice.post("/review/preferences", show_images="false", back=back)

    assert switched_off.status_code == 303
    assert switched_off.headers["location"] == back
    page = alice.item(item)
    shows_no_image(page)
    assert "No-images mode." in page.text
    assert 'id="decide"' in page.text, "signals and decisions remain"
    assert alice.preview(item).status_code == 403
    assert alice.reveal(item).status_code == 403
    assert exposures(runtime) == 0

    alice.post("/review/preferences", show_images="true", back=back)

    restored = alice.item(item).text
    assert f'<img id="preview" src="/review/items/{item}/preview"' in restored
    assert is_greyscale(picture(alice.preview(item)))
