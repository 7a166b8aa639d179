"""Screening an edited copy of a known image: a mirrored, turned or framed re-upload is blocked
while its setting is on, and says which edit matched; with the setting off it gets through."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from tests.api.conftest import add_hashes, create_bank, screen
from tests.images import encode, make_photo
from vigil.api import create_app
from vigil.config import IntakeSettings, Settings
from vigil.evidence.vault import find_item_for_submission
from vigil.intake import open_image
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.signals import compute_signals, default_hashers

KNOWN = make_photo(640, 480, seed=301)


def framed_in_noise(image: Image.Image) -> Image.Image:
    rng = np.random.default_rng(7)
    width, height = round(image.width * 1.1), round(image.height * 1.1)
    canvas = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return canvas


# Each edit, the setting that catches it, and the variant the match names.
EDITS: dict[str, tuple[Callable[[Image.Image], Image.Image], str, str]] = {
    "mirrored": (
        lambda image: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "dihedral",
        "flip_h",
    ),
    "turned clockwise": (
        lambda image: image.transpose(Image.Transpose.ROTATE_270),
        "dihedral",
        "rotate90",
    ),
    "letterboxed": (
        lambda image: ImageOps.expand(image, (0, 90, 0, 90), fill="black"),
        "trim_borders",
        "trimmed",
    ),
    "in a noisy frame": (framed_in_noise, "centre_crops", "crop_90"),
}
_SETTING_OFF: dict[str, Any] = {"dihedral": False, "trim_borders": False, "centre_crops": []}


def own_pdq(image: Image.Image) -> str:
    """The bank entry for a known image: its own PDQ hash, as `vigil hash` prints it."""
    decoded = open_image(encode(image, "PNG"), IntakeSettings())
    return compute_signals(decoded, *default_hashers()).frame_hashes[0].value


@contextmanager
def service(
    make_settings: Callable[..., Settings],
    make_runtime: Callable[[Settings], Runtime],
    **matching: Any,
) -> Iterator[tuple[Runtime, TestClient, dict[str, str]]]:
    """The app with these matching settings, a block bank holding the known image's hash."""
    # No classifiers: matching decides these images, and a model's opinion would only add time.
    classifiers = {"opennsfw": False, "face_age": False}
    runtime = make_runtime(make_settings(matching=matching, classifiers=classifiers))
    key = ensure_bootstrap_key(runtime.database)
    assert key is not None
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        create_bank(client, headers, "known", "pdq", "block")
        add_hashes(client, headers, "known", [own_pdq(KNOWN)])
        yield runtime, client, headers


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_copy_of_a_known_image_is_blocked_and_the_reason_names_the_edit(
    make_settings: Callable[..., Settings],
    make_runtime: Callable[[Settings], Runtime],
    edit: str,
) -> None:
    make, _, variant = EDITS[edit]
    with service(make_settings, make_runtime) as (runtime, client, headers):
        body = screen(client, headers, encode(make(KNOWN), "JPEG", quality=80)).json()

    assert body["decision"] == "block"
    (reason,) = [reason for reason in body["reasons"] if reason["code"] == "bank_match"]
    assert (reason["bank"], reason["variant"]) == ("known", variant)
    assert reason["distance"] <= 31
    assert "the known image" in reason["message"]
    # The reported hashes are the upload's own, never the edited copy's.
    assert [entry["hash"] for entry in body["hashes"]["pdq"]] != [reason["hash"]]
    # The evidence sealed with it keeps which copy matched.
    with runtime.database.session() as session:
        item = find_item_for_submission(session, body["submission_id"])
        assert item is not None
        assert [match["variant"] for match in item.matches] == [variant]


@pytest.mark.parametrize("edit", EDITS)
def test_with_its_setting_off_an_edited_copy_is_not_matched(
    make_settings: Callable[..., Settings],
    make_runtime: Callable[[Settings], Runtime],
    edit: str,
) -> None:
    make, setting, _ = EDITS[edit]
    with service(make_settings, make_runtime, **{setting: _SETTING_OFF[setting]}) as (
        _,
        client,
        headers,
    ):
        edited = screen(client, headers, encode(make(KNOWN), "JPEG", quality=80)).json()
        unedited = screen(client, headers, encode(KNOWN, "JPEG", quality=80)).json()

    assert edited["decision"] == "allow"
    assert unedited["decision"] == "block"  # the bank itself still works
    assert unedited["reasons"][0]["variant"] is None


def test_featureless_and_unrelated_pictures_match_nothing_through_their_edited_copies(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    flat = Image.new("RGB", (500, 400), (128, 128, 128))
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 500, dtype=np.uint8), (400, 1)))
    with service(make_settings, make_runtime) as (_, client, headers):
        # A list holding featureless hashes (they are in real lists) next to the known image.
        featureless = [own_pdq(flat), own_pdq(gradient.convert("RGB")), "0" * 64, "f" * 64]
        add_hashes(client, headers, "known", featureless)
        uploads = {
            "flat": flat,
            "flat, letterboxed": ImageOps.expand(flat, (0, 80), fill="black"),
            "gradient": gradient.convert("RGB"),
            "gradient, mirrored": gradient.convert("RGB").transpose(
                Image.Transpose.FLIP_LEFT_RIGHT
            ),
            # Its own hash is sharp (the frame's edges) and unlisted, but its centre crops are
            # plain black, whose hash is the listed 0...0: too featureless to be searched.
            "black in a thin white frame": ImageOps.expand(
                Image.new("RGB", (460, 360)), 20, fill="white"
            ),
            "black": Image.new("RGB", (300, 300)),
            "unrelated photo": make_photo(640, 480, seed=302),
            "unrelated photo, mirrored and letterboxed": ImageOps.expand(
                make_photo(640, 480, seed=303).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                (0, 90),
                fill="black",
            ),
        }
        decisions = {
            name: screen(client, headers, encode(image, "JPEG", quality=90)).json()["decision"]
            for name, image in uploads.items()
        }

    assert decisions == dict.fromkeys(uploads, "allow")
