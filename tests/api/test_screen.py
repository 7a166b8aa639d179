"""POST /v1/screen end to end: known images are blocked, others allowed, held ones wait."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import (
    add_hashes,
    create_bank,
    has_stored_copy,
    hold_exactly,
    pdq_of,
    screen,
    site_key,
)
from tests.images import animated_gif, encode, make_photo
from vigil.config import Settings
from vigil.evidence.vault import find_item_for_submission
from vigil.runtime import Runtime
from vigil.store.sites import Role


def _variants(png: bytes) -> dict[str, bytes]:
    original = Image.open(io.BytesIO(png)).convert("RGB")
    half = original.resize((original.width // 2, original.height // 2))
    return {
        "jpeg_quality_70": encode(original, "JPEG", quality=70),
        "half_size": encode(half, "PNG"),
        "converted_to_png": encode(Image.open(io.BytesIO(encode(original, "JPEG"))), "PNG"),
    }


@pytest.mark.parametrize("variant", ["jpeg_quality_70", "half_size", "converted_to_png"])
def test_near_copies_of_a_known_image_are_blocked(
    client: TestClient, admin_headers: dict[str, str], stand_in: bytes, variant: str
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    add_hashes(client, admin_headers, "known", [pdq_of(client, admin_headers, stand_in)])

    response = screen(client, admin_headers, _variants(stand_in)[variant])

    assert response.status_code == 200
    body = response.json()
    assert body["decision"] == "block"
    match = body["reasons"][0]
    assert (match["code"], match["bank"], match["hash_type"]) == ("bank_match", "known", "pdq")
    assert match["distance"] <= 31
    assert body["review"] == "none"


def test_an_unrelated_image_is_allowed(
    client: TestClient, admin_headers: dict[str, str], stand_in: bytes
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    add_hashes(client, admin_headers, "known", [pdq_of(client, admin_headers, stand_in)])

    body = screen(client, admin_headers, encode(make_photo(seed=7), "JPEG")).json()

    assert body["decision"] == "allow"
    assert body["reasons"] == []
    assert set(body["hashes"]) == {"sha256", "md5", "sha1", "pdq"}


def test_exact_digest_in_a_hold_bank_holds_only_that_file(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    data = encode(make_photo(seed=3), "JPEG", quality=85)
    sha256 = screen(client, admin_headers, data).json()["hashes"]["sha256"]
    create_bank(client, admin_headers, "suspect", "sha256", "hold")
    add_hashes(client, admin_headers, "suspect", [sha256.upper()])

    held = screen(client, admin_headers, data).json()
    re_encoded = screen(client, admin_headers, encode(make_photo(seed=3), "JPEG", quality=84))

    assert held["decision"] == "hold"
    assert held["reasons"][0]["hash_type"] == "sha256"
    assert re_encoded.json()["decision"] == "allow"


def test_an_ignore_bank_suppresses_a_match_and_says_so(
    client: TestClient, admin_headers: dict[str, str], stand_in: bytes
) -> None:
    known = pdq_of(client, admin_headers, stand_in)
    create_bank(client, admin_headers, "known", "pdq", "block")
    add_hashes(client, admin_headers, "known", [known])
    create_bank(client, admin_headers, "false-positives", "pdq", "ignore", threshold=10)
    add_hashes(client, admin_headers, "false-positives", [known])

    body = screen(client, admin_headers, stand_in).json()

    assert body["decision"] == "allow"
    assert [reason["code"] for reason in body["reasons"]] == ["match_ignored"]
    assert body["reasons"][0]["ignored_by"] == "false-positives"


def test_a_disabled_bank_stops_matching_until_enabled_again(
    client: TestClient, admin_headers: dict[str, str], stand_in: bytes
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    add_hashes(client, admin_headers, "known", [pdq_of(client, admin_headers, stand_in)])

    client.patch("/v1/banks/known", headers=admin_headers, json={"enabled": False})
    while_disabled = screen(client, admin_headers, stand_in).json()["decision"]
    client.patch("/v1/banks/known", headers=admin_headers, json={"enabled": True})
    after = screen(client, admin_headers, stand_in).json()["decision"]

    assert (while_disabled, after) == ("allow", "block")


def test_every_frame_of_an_animation_is_checked(
    client: TestClient, admin_headers: dict[str, str], stand_in: bytes
) -> None:
    """The bad frame sits in the middle of harmless ones."""
    bad_frame = Image.open(io.BytesIO(stand_in)).convert("RGB").resize((400, 300))
    create_bank(client, admin_headers, "known", "pdq", "block")
    add_hashes(
        client, admin_headers, "known", [pdq_of(client, admin_headers, encode(bad_frame, "PNG"))]
    )
    harmless = [make_photo(400, 300, seed=seed) for seed in range(20, 29)]
    frames = [*harmless[:5], bad_frame, *harmless[5:]]

    body = screen(client, admin_headers, animated_gif(frames), content_type="image/gif").json()

    assert body["decision"] == "block"
    assert body["reasons"][0]["frame"] == 5
    assert len(body["hashes"]["pdq"]) == len(frames)


@pytest.mark.parametrize(
    "context",
    [
        {"uploader_id": "u1", "trust_level": "new"},
        {
            "uploader_id": "u2",
            "account_created_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        },
    ],
    ids=["trust_level_new", "young_account"],
)
def test_new_uploaders_are_held_when_configured(
    make_settings: Callable[..., Settings],
    make_runtime: Callable[[Settings], Runtime],
    context: dict[str, str],
) -> None:
    runtime = make_runtime(make_settings(policy={"hold_new_uploaders": True}))
    from vigil.api import create_app
    from vigil.runtime import ensure_bootstrap_key

    headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
    image = encode(make_photo(seed=5), "JPEG")
    with TestClient(create_app(runtime)) as client:
        held = screen(client, headers, image, context).json()
        veteran = screen(
            client,
            headers,
            image,
            {
                "uploader_id": "old",
                "trust_level": "basic",
                "account_created_at": "2020-01-01T00:00:00Z",
            },
        ).json()
        vouched = screen(
            client, headers, image, {"uploader_id": "mod", "trust_level": "trusted"}
        ).json()

    assert held["decision"] == "hold"
    assert held["reasons"][0]["code"] == "new_uploader"
    assert veteran["decision"] == "allow"
    assert vouched["decision"] == "allow"


def test_new_uploaders_are_allowed_when_not_configured(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = screen(
        client, admin_headers, encode(make_photo(), "JPEG"), {"trust_level": "new"}
    ).json()
    assert body["decision"] == "allow"


def test_a_held_image_is_never_reported_as_allowed_before_a_decision(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    image = encode(make_photo(seed=11), "JPEG")
    hold_exactly(client, admin_headers, image)

    held = screen(client, admin_headers, image, {"uploader_id": "u9", "ref": "post-1"}).json()
    submission = f"/v1/submissions/{held['submission_id']}"
    before = [client.get(submission, headers=admin_headers).json() for _ in range(3)]
    stored = has_stored_copy(runtime, held["submission_id"])
    decided = client.post(
        f"{submission}/decision", headers=admin_headers, json={"decision": "allow", "note": "fine"}
    )
    after = client.get(submission, headers=admin_headers).json()
    again = client.post(f"{submission}/decision", headers=admin_headers, json={"decision": "block"})

    assert held["decision"] == "hold"
    assert held["review"] == "pending"
    assert all(state["decision"] == "hold" and state["review"] == "pending" for state in before)
    assert stored, "a held image is kept until a moderator decides"
    assert decided.status_code == 200
    assert (after["decision"], after["review"], after["initial_decision"]) == (
        "allow",
        "decided",
        "hold",
    )
    assert after["decision_note"] == "fine"
    assert after["ref"] == "post-1"
    assert again.status_code == 409
    assert not has_stored_copy(runtime, held["submission_id"]), (
        "Vigil keeps no copy of an approved image"
    )


def test_a_rejected_held_image_becomes_blocked_and_stays_stored(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    image = encode(make_photo(seed=12), "JPEG")
    hold_exactly(client, admin_headers, image)
    held = screen(client, admin_headers, image).json()

    rejected = client.post(
        f"/v1/submissions/{held['submission_id']}/decision",
        headers=admin_headers,
        json={"decision": "block"},
    ).json()

    assert rejected["decision"] == "block"
    assert has_stored_copy(runtime, held["submission_id"])


def test_a_known_image_is_sealed_as_evidence_and_not_offered_for_review(
    client: TestClient, admin_headers: dict[str, str], stand_in: bytes, runtime: Runtime
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    add_hashes(client, admin_headers, "known", [pdq_of(client, admin_headers, stand_in)])

    blocked = screen(client, admin_headers, stand_in).json()
    decision = client.post(
        f"/v1/submissions/{blocked['submission_id']}/decision",
        headers=admin_headers,
        json={"decision": "allow"},
    )

    # Sealed in the vault, never a plain copy the review app could show.
    assert not has_stored_copy(runtime, blocked["submission_id"])
    with runtime.database.session() as session:
        item = find_item_for_submission(session, blocked["submission_id"])
        assert item is not None
    assert runtime.vault.open_image(item) == stand_in
    assert decision.status_code == 409


def test_an_allowed_image_is_not_stored(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    allowed = screen(client, admin_headers, encode(make_photo(seed=13), "JPEG")).json()
    assert allowed["decision"] == "allow"
    assert not has_stored_copy(runtime, allowed["submission_id"])


def test_the_same_idempotency_key_returns_the_same_submission(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    image = encode(make_photo(seed=14), "JPEG")

    first = screen(client, admin_headers, image, idempotency_key="upload-1")
    second = screen(client, admin_headers, image, idempotency_key="upload-1")
    other_key = screen(client, admin_headers, image, idempotency_key="upload-2")
    misuse = screen(
        client, admin_headers, encode(make_photo(seed=15), "JPEG"), idempotency_key="upload-1"
    )

    assert first.json()["submission_id"] == second.json()["submission_id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert other_key.json()["submission_id"] != first.json()["submission_id"]
    assert misuse.status_code == 409
    assert misuse.json()["error"]["code"] == "idempotency_conflict"


def test_concurrent_retries_with_one_idempotency_key_make_one_submission(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    image = encode(make_photo(seed=16), "JPEG")
    results: list[str] = []

    def send() -> None:
        response = screen(client, admin_headers, image, idempotency_key="retry-me")
        assert response.status_code == 200, response.text
        results.append(response.json()["submission_id"])

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 6
    assert len(set(results)) == 1
    from sqlalchemy import func, select

    from vigil.store.models import Submission

    with runtime.database.session() as session:
        count = session.scalar(select(func.count()).where(Submission.idempotency_key == "retry-me"))
    assert count == 1


def test_every_screening_is_in_the_audit_log(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    body = screen(
        client,
        admin_headers,
        encode(make_photo(seed=17), "JPEG"),
        {"uploader_id": "u7", "ip": "203.0.113.9"},
    ).json()
    from vigil.store.audit import events_for

    with runtime.database.session() as session:
        events = events_for(session, body["submission_id"])
        recorded = [(event.action, event.details) for event in events]

    assert len(recorded) == 1
    action, details = recorded[0]
    assert action == "submission.screened"
    assert details["decision"] == "allow"
    assert details["hashes"]["sha256"] == body["hashes"]["sha256"]
    assert details["context"] == {"uploader_id": "u7", "ip": "203.0.113.9"}


def test_a_site_sees_only_its_own_submissions(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    _, other = site_key(runtime, "other", Role.MODERATOR)
    mine = screen(client, admin_headers, encode(make_photo(seed=18), "JPEG")).json()

    assert client.get(f"/v1/submissions/{mine['submission_id']}", headers=other).status_code == 404
    assert (
        client.get(f"/v1/submissions/{mine['submission_id']}", headers=admin_headers).status_code
        == 200
    )
    assert (
        json.loads(client.get("/v1/submissions/nope", headers=admin_headers).text)["error"]["code"]
        == "not_found"
    )


EVIDENCE_CONTEXT = {
    "uploader_id": "u77",
    "trust_level": "new",
    "ip": "2001:db8::7",
    "port": 443,
    "user_agent": "Stand-in Browser/1.0",
    "page_url": "https://forum.example.test/t/1",
    "account": {
        "screen_name": "sunny",
        "email": "sunny@example.test",
        "date_of_birth": "1990-05-01",
    },
}


def test_evidence_details_are_kept_only_with_images_vigil_keeps(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    from vigil.api import create_app
    from vigil.runtime import ensure_bootstrap_key
    from vigil.store.models import Submission

    runtime = make_runtime(make_settings(policy={"hold_new_uploaders": True}))
    headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
    image = encode(make_photo(seed=77), "JPEG")
    trusted = {**EVIDENCE_CONTEXT, "uploader_id": "u78", "trust_level": "trusted"}
    with TestClient(create_app(runtime)) as client:
        held = screen(client, headers, image, EVIDENCE_CONTEXT).json()
        allowed = screen(client, headers, image, trusted).json()

    assert (held["decision"], allowed["decision"]) == ("hold", "allow")
    with runtime.database.session() as session:
        kept = session.get_one(Submission, held["submission_id"]).context
        minimal = session.get_one(Submission, allowed["submission_id"]).context
    assert kept["port"] == 443
    assert kept["user_agent"] == "Stand-in Browser/1.0"
    assert kept["account"] == {
        "screen_name": "sunny",
        "email": "sunny@example.test",
        "date_of_birth": "1990-05-01",
    }
    assert kept["page_url"] == "https://forum.example.test/t/1"
    # An allowed upload's uploader keeps only what screening uses.
    assert minimal == {"uploader_id": "u78", "trust_level": "trusted", "ip": "2001:db8::7"}
