"""Hostile and malformed requests get a clear 4xx (or 503), never a 500, and nothing unscreened
is ever allowed."""

from __future__ import annotations

import select as socket_select
import socket
import struct
import zlib
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.api.conftest import screen, site_key
from tests.images import animated_gif, encode, make_photo
from tests.live import live_server
from vigil.api import create_app
from vigil.config import Settings
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.store.models import Submission
from vigil.store.sites import Role


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def decompression_bomb() -> bytes:
    """A tiny PNG that declares 100 000 x 100 000 pixels (10 gigapixels)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


JPEG = encode(make_photo(seed=1), "JPEG")
PNG = encode(make_photo(seed=2), "PNG")

BAD_IMAGES: dict[str, tuple[bytes, str, str]] = {
    "zero_bytes": (b"", "empty.jpg", "empty_image"),
    "text_named_jpg": (b"just some text, honestly an image\n", "photo.jpg", "unsupported_format"),
    "svg": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "image.svg",
        "unsupported_format",
    ),
    "html": (b"<!DOCTYPE html><html><body>hi</body></html>", "a.png", "unsupported_format"),
    "pdf": (b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "a.jpg", "unsupported_format"),
    "truncated_jpeg": (JPEG[: len(JPEG) // 2], "half.jpg", "corrupt_image"),
    "truncated_png": (PNG[: len(PNG) - 20], "cut.png", "corrupt_image"),
    "jpeg_header_only": (JPEG[:200], "head.jpg", "corrupt_image"),
    "decompression_bomb": (decompression_bomb(), "bomb.png", "too_many_pixels"),
    "jpeg_with_zip_appended": (
        JPEG + b"PK\x03\x04" + b"\x00" * 26 + b"secret.txt",
        "a.jpg",
        "polyglot_image",
    ),
}


def _submission_count(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(Submission)) or 0)


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_images_are_refused_with_a_clear_400(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime, case: str
) -> None:
    data, filename, code = BAD_IMAGES[case]

    response = screen(client, admin_headers, data, filename=filename)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert _submission_count(runtime) == 0, "a refused upload is not recorded as screened"


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"a string"', "JSON object"),
        ('{"trust_level": "superuser"}', "trust_level"),
        ('{"uploader": "typo of uploader_id"}', "uploader"),
        ('{"ip": "999.1.1.1"}', "ip"),
        ('{"account_created_at": "yesterday"}', "account_created_at"),
        ('{"kind": "video"}', "kind"),
        ('{"uploader_id": ""}', "uploader_id"),
        ('{"ref": "' + "x" * 500 + '"}', "ref"),
        # PostgreSQL cannot store a NUL character: refused as bad input, not a 503 to retry.
        ('{"uploader_id": "u\\u00001"}', "uploader_id"),
        ('{"ref": "post\\u0000"}', "ref"),
        ('{"port": 70000}', "port"),
        ('{"port": "eighty"}', "port"),
        ('{"user_agent": "' + "x" * 1001 + '"}', "user_agent"),
        ('{"page_url": "javascript:alert(1)"}', "page_url"),
        ('{"page_url": "https://a.test/with space"}', "page_url"),
        ('{"account": {"screen_name": "ok", "password": "typo"}}', "account.password"),
        ('{"account": {"email": "x\\u0000@y"}}', "account.email"),
        ('{"account": {"date_of_birth": "last year"}}', "account.date_of_birth"),
        ('{"account": "sunny42"}', "account"),
    ],
)
def test_a_bad_context_gets_a_422_naming_the_problem(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime, context: str, problem: str
) -> None:
    response = screen(client, admin_headers, JPEG, context)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_context"
    assert problem in response.json()["error"]["message"]
    assert _submission_count(runtime) == 0


def test_a_request_without_an_image_gets_a_400(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    no_file = client.post("/v1/screen", headers=admin_headers, data={"context": "{}"})
    as_json = client.post("/v1/screen", headers=admin_headers, json={"image": "aGVsbG8="})

    assert no_file.status_code == 400
    assert as_json.status_code == 400
    assert "image" in no_file.json()["error"]["message"]


def test_malformed_multipart_is_a_client_error(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/screen",
        headers={**admin_headers, "Content-Type": "multipart/form-data; boundary=xyz"},
        content=b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\nabc',
    )
    assert 400 <= response.status_code < 500


def test_an_oversized_upload_gets_a_413(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    runtime = make_runtime(make_settings(intake={"max_bytes": 50_000}))
    headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
    big = encode(make_photo(1200, 900, seed=3), "PNG")
    assert len(big) > 50_000

    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        response = screen(client, headers, big, filename="big.png")

    assert response.status_code == 413
    assert response.json()["error"]["code"] in {"image_too_large", "request_too_large"}
    assert _submission_count(runtime) == 0


def test_a_body_far_over_the_limit_is_cut_off_while_streaming(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    """A chunked upload without Content-Length cannot make Vigil read or store gigabytes."""
    runtime = make_runtime(make_settings(intake={"max_bytes": 10_000}))
    key = ensure_bootstrap_key(runtime.database)
    budget = 200 * 1024 * 1024
    with live_server(create_app(runtime)) as (host, port):
        connection = socket.create_connection((host, port), timeout=10)
        connection.sendall(
            b"POST /v1/screen HTTP/1.1\r\n"
            + f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
        connection.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"\xff" * 65536
        sent = 0
        answer = b""
        try:
            while sent < budget and not answer:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                readable, _, _ = socket_select.select([connection], [], [], 0)
                if readable:
                    answer = connection.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server hung up on the rest of the body
        if not answer:
            connection.settimeout(10)
            answer = connection.recv(65536)
        connection.close()

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < budget, "the body was read to the end instead of being cut off"


def test_an_animation_with_more_frames_than_the_limit_is_held_not_allowed(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    runtime = make_runtime(make_settings(intake={"max_frames": 4}))
    headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
    gif = animated_gif([make_photo(64, 64, seed=seed) for seed in range(10)])

    with TestClient(create_app(runtime)) as client:
        body = screen(client, headers, gif, content_type="image/gif").json()

    assert body["decision"] == "hold"
    assert body["reasons"][0]["code"] == "frames_not_screened"
    assert body["reasons"][0]["frame_count"] == 10
    assert body["reasons"][0]["frames_screened"] == 4


def test_bad_idempotency_keys_are_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = screen(client, admin_headers, JPEG, idempotency_key="x" * 300)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer vgl_not_a_real_key"}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({"Authorization": "Bearer"}, 401),
    ],
)
def test_requests_without_a_valid_key_are_refused(
    client: TestClient, headers: dict[str, str], status: int
) -> None:
    response = screen(client, headers, JPEG)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.headers.get("WWW-Authenticate") == "Bearer"


def test_a_screening_key_cannot_manage_banks_or_decide(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    _, headers = site_key(runtime, "forum", Role.SCREEN)
    submission = screen(client, headers, JPEG).json()["submission_id"]

    create = client.post(
        "/v1/banks", headers=headers, json={"name": "x", "hash_type": "pdq", "action": "block"}
    )
    decide = client.post(
        f"/v1/submissions/{submission}/decision", headers=headers, json={"decision": "allow"}
    )
    listing = client.get("/v1/banks", headers=headers)

    assert (create.status_code, decide.status_code, listing.status_code) == (403, 403, 403)
    assert create.json()["error"]["code"] == "forbidden"


def test_a_revoked_key_stops_working(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    from vigil.store import sites

    prefix, headers = site_key(runtime, "forum", Role.SCREEN)
    before = screen(client, headers, JPEG).status_code
    with runtime.database.session() as session:
        sites.revoke_api_key(session, prefix)

    assert (before, screen(client, headers, JPEG).status_code) == (200, 401)


def test_unknown_routes_and_methods_answer_in_the_error_format(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    missing = client.get("/v1/nothing-here", headers=admin_headers)
    wrong_method = client.get("/v1/screen", headers=admin_headers)

    assert missing.status_code == 404
    assert wrong_method.status_code == 405
    assert "error" in missing.json()
    assert "error" in wrong_method.json()


def test_ids_and_notes_with_a_nul_character_are_client_errors(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    held = screen(client, admin_headers, JPEG).json()["submission_id"]

    lookup = client.get("/v1/submissions/a%00b", headers=admin_headers)
    bank = client.get("/v1/banks/a%00b", headers=admin_headers)
    note = client.post(
        f"/v1/submissions/{held}/decision",
        headers=admin_headers,
        json={"decision": "block", "note": "bad\u0000note"},
    )

    assert lookup.status_code == 404
    assert bank.status_code == 404
    assert note.status_code == 422
