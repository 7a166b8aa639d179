"""The banks API: create, list, change, import and remove hashes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import add_hashes, create_bank, screen
from tests.images import encode, make_photo

PDQ_A = "f" * 64
PDQ_B = "0f" * 32


def test_banks_are_created_listed_and_read(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    create_bank(client, admin_headers, "ncmec", "pdq", "block")
    create_bank(client, admin_headers, "local-md5", "md5", "hold", description="from the old forum")

    listed = client.get("/v1/banks", headers=admin_headers).json()
    one = client.get("/v1/banks/ncmec", headers=admin_headers).json()

    assert [bank["name"] for bank in listed] == ["local-md5", "ncmec"]
    assert (one["hash_type"], one["action"], one["threshold"], one["enabled"]) == (
        "pdq",
        "block",
        31,
        True,
    )
    assert listed[0]["threshold"] == 0
    assert listed[0]["description"] == "from the old forum"


def test_bad_bank_definitions_are_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    cases = {
        "duplicate": ({"name": "known", "hash_type": "pdq", "action": "block"}, 409),
        "bad_name": ({"name": "no spaces please", "hash_type": "pdq", "action": "block"}, 422),
        "bad_type": ({"name": "x", "hash_type": "sha512", "action": "block"}, 422),
        "bad_action": ({"name": "x", "hash_type": "pdq", "action": "delete"}, 422),
        "exact_with_threshold": (
            {"name": "x", "hash_type": "md5", "action": "block", "threshold": 3},
            422,
        ),
        "huge_threshold": (
            {"name": "x", "hash_type": "pdq", "action": "block", "threshold": 200},
            422,
        ),
        "unknown_field": (
            {"name": "x", "hash_type": "pdq", "action": "block", "colour": "red"},
            422,
        ),
    }
    for case, (body, status) in cases.items():
        response = client.post("/v1/banks", headers=admin_headers, json=body)
        assert response.status_code == status, (case, response.text)
        assert "error" in response.json()


def test_hashes_are_added_as_a_json_list_with_bad_entries_reported(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")

    report = add_hashes(client, admin_headers, "known", [PDQ_A, PDQ_A.upper(), "nope", 42, PDQ_B])

    assert report["added"] == 2
    assert report["bad_line_count"] == 2
    assert [bad["line"] for bad in report["bad_lines"]] == [3, 4]
    assert client.get("/v1/banks/known", headers=admin_headers).json()["hash_count"] == 2


def test_hashes_are_added_from_an_uploaded_csv_file(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    csv = f"id,signal_value,quality\n1,{PDQ_A},90\n2,{PDQ_B},20\n3,garbage,90\n".encode()

    response = client.post(
        "/v1/banks/known/hashes",
        headers=admin_headers,
        files={"file": ("list.csv", csv, "text/csv")},
    )

    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["added"], report["low_quality_skipped"], report["bad_line_count"]) == (1, 1, 1)
    assert report["bad_lines"][0]["line"] == 4


def test_a_hash_list_upload_with_no_hash_column_is_a_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    response = client.post(
        "/v1/banks/known/hashes",
        headers=admin_headers,
        files={"file": ("list.csv", b"name,size\nphoto,12\n", "text/csv")},
    )
    assert response.status_code == 422
    assert "column" in response.json()["error"]["message"]


def test_adding_to_a_missing_bank_or_with_a_wrong_body_is_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    create_bank(client, admin_headers, "known", "pdq", "block")
    missing = client.post("/v1/banks/absent/hashes", headers=admin_headers, json=[PDQ_A])
    not_a_list = client.post("/v1/banks/known/hashes", headers=admin_headers, json={"hash": PDQ_A})
    not_json = client.post(
        "/v1/banks/known/hashes",
        headers={**admin_headers, "Content-Type": "application/json"},
        content=b"{[",
    )
    plain_text = client.post(
        "/v1/banks/known/hashes",
        headers={**admin_headers, "Content-Type": "text/plain"},
        content=PDQ_A,
    )

    assert missing.status_code == 404
    assert not_a_list.status_code == 400
    assert not_json.status_code == 400
    assert plain_text.status_code == 400


def test_a_removed_hash_no_longer_matches(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    image = encode(make_photo(seed=30), "JPEG")
    md5 = screen(client, admin_headers, image).json()["hashes"]["md5"]
    create_bank(client, admin_headers, "local", "md5", "block")
    add_hashes(client, admin_headers, "local", [md5])
    blocked = screen(client, admin_headers, image).json()["decision"]

    removed = client.delete(f"/v1/banks/local/hashes/{md5.upper()}", headers=admin_headers)
    again = client.delete(f"/v1/banks/local/hashes/{md5}", headers=admin_headers)
    malformed = client.delete("/v1/banks/local/hashes/xyz", headers=admin_headers)

    assert blocked == "block"
    assert removed.status_code == 204
    assert again.status_code == 404
    assert malformed.status_code == 422
    assert screen(client, admin_headers, image).json()["decision"] == "allow"
    assert client.get("/v1/banks/local", headers=admin_headers).json()["hash_count"] == 0


def test_a_bank_action_change_takes_effect_at_once(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    image = encode(make_photo(seed=31), "JPEG")
    sha1 = screen(client, admin_headers, image).json()["hashes"]["sha1"]
    create_bank(client, admin_headers, "local", "sha1", "hold")
    add_hashes(client, admin_headers, "local", [sha1])

    before = screen(client, admin_headers, image).json()["decision"]
    patched = client.patch("/v1/banks/local", headers=admin_headers, json={"action": "block"})
    after = screen(client, admin_headers, image).json()["decision"]

    assert (before, patched.json()["action"], after) == ("hold", "block", "block")
