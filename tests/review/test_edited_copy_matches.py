"""A moderator sees which edited copy of an upload matched a bank: "mirrored left to right"."""

from __future__ import annotations

import html

from PIL import Image

from tests.api.conftest import add_hashes, create_bank, screen
from tests.images import encode, make_photo
from tests.review.conftest import Browsers, signed_in
from vigil.config import IntakeSettings
from vigil.intake import open_image
from vigil.review.accounts import UserRole
from vigil.runtime import Runtime
from vigil.signals import compute_signals, default_hashers


def test_the_item_page_says_a_hold_bank_matched_a_mirrored_copy(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    known = make_photo(640, 480, seed=401)
    entry = compute_signals(
        open_image(encode(known, "PNG"), IntakeSettings()), *default_hashers()
    ).frame_hashes[0]
    api = app_client()
    create_bank(api, site_headers, "watch", "pdq", "hold")
    add_hashes(api, site_headers, "watch", [entry.value])
    mirrored = encode(known.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=85)
    body = screen(api, site_headers, mirrored, {"uploader_id": "u1", "trust_level": "trusted"})
    assert body.json()["decision"] == "hold", body.text
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)

    page = html.unescape(alice.get(f"/review/items/{body.json()['submission_id']}").text)

    assert "the known image mirrored left to right" in page
    assert "edited copy flip_h" in page
