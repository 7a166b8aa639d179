"""Liveness, readiness, metrics and the OpenAPI documentation."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import add_hashes, create_bank, screen
from tests.images import encode, make_photo


def test_health_and_readiness(client: TestClient, admin_headers: dict[str, str]) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    add_hashes(client, admin_headers, "known", ["a" * 64, "b" * 64])

    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["pdq_index"]["hashes"] == 2


def test_metrics_count_decisions_latency_and_bank_sizes(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    create_bank(client, admin_headers, "known", "md5", "block")
    image = encode(make_photo(seed=40), "JPEG")
    add_hashes(
        client,
        admin_headers,
        "known",
        [screen(client, admin_headers, image).json()["hashes"]["md5"]],
    )
    screen(client, admin_headers, image)
    screen(client, admin_headers, b"not an image")

    text = client.get("/metrics").text

    assert 'vigil_submissions_total{decision="allow"} 1.0' in text
    assert 'vigil_submissions_total{decision="block"} 1.0' in text
    assert 'vigil_refused_uploads_total{code="unsupported_format"} 1.0' in text
    assert "vigil_screening_seconds_count 2.0" in text
    assert (
        'vigil_bank_hashes{action="block",bank="known",enabled="true",hash_type="md5"} 1.0' in text
    )
    assert 'vigil_review_pending{priority="urgent"} 0.0' in text


def test_the_api_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert client.get("/docs").status_code == 200
    for path in (
        "/v1/screen",
        "/v1/submissions/{submission_id}",
        "/v1/submissions/{submission_id}/decision",
        "/v1/banks",
        "/v1/banks/{name}/hashes",
        "/v1/banks/{name}/hashes/{value}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in schema["paths"], path
    assert "multipart/form-data" in schema["paths"]["/v1/screen"]["post"]["requestBody"]["content"]
