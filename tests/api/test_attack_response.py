"""The running app answers an attack by itself: its background worker pages on-call staff for a
known image, raises the lockdown from the rules, and tells the site, with no call but uploads."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import add_hashes, create_bank, screen
from tests.images import encode, make_photo
from tests.receiver import wait_until, webhook_receiver
from vigil.api import create_app
from vigil.config import Settings
from vigil.runtime import Runtime, ensure_bootstrap_key

FAST = {"poll_seconds": 0.05, "retry_base_seconds": 0.2, "retry_max_seconds": 1.0}


def _events(received: list[Any], event_type: str) -> list[dict[str, Any]]:
    return [
        json.loads(request.body)
        for request in received
        if request.headers.get("Vigil-Event-Type") == event_type
    ]


def test_a_wave_of_known_images_pages_on_call_and_locks_the_site_down_unattended(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    with webhook_receiver() as site, webhook_receiver() as pager:
        settings = make_settings(
            webhooks=FAST,
            lockdown={
                "evaluate_seconds": 0.1,
                "rules": [
                    {"signal": "bank_match", "at_least": 2, "window_minutes": 30, "level": 2}
                ],
            },
            paging={
                "channels": [{"name": "oncall", "kind": "webhook", "url": pager.url}],
                "tiers": [{"channels": ["oncall"]}],
            },
        )
        runtime = make_runtime(settings)
        headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
        known = [encode(make_photo(seed=seed), "JPEG") for seed in (301, 302)]
        with TestClient(create_app(runtime)) as client:
            assert client.put("/v1/webhook", headers=headers, json={"url": site.url}).is_success
            create_bank(client, headers, "stand-in", "sha256", "block")
            digests = [screen(client, headers, data).json()["hashes"]["sha256"] for data in known]
            add_hashes(client, headers, "stand-in", digests)

            first = screen(client, headers, known[0], {"uploader_id": "attacker-1"}).json()
            wait_until(lambda: bool(pager.delivered()), what="a page for the known image")
            second = screen(client, headers, known[1], {"uploader_id": "attacker-2"}).json()
            wait_until(
                lambda: (
                    bool(_events(site.delivered(), "lockdown.changed"))
                    and len(_events(site.delivered(), "uploader.suspended")) == 2
                ),
                what="the site told of the suspensions and the lockdown",
            )
            ordinary = screen(
                client,
                headers,
                encode(make_photo(seed=303), "JPEG"),
                {"uploader_id": "long-standing", "trust_level": "trusted"},
            ).json()
            lockdown = client.get("/v1/lockdown", headers=headers).json()

    for answer in (first, second):
        assert (answer["decision"], answer["review"]) == ("block", "none")
        assert answer["uploader_suspended"] is True
    pages = [json.loads(request.body) for request in pager.delivered()]
    assert pages[0]["incident"]["kind"] == "known_illegal"
    assert "/review/incidents/" in pages[0]["acknowledge_url"]
    suspended = {
        event["data"]["uploader_id"] for event in _events(site.delivered(), "uploader.suspended")
    }
    assert suspended == {"attacker-1", "attacker-2"}
    [changed] = _events(site.delivered(), "lockdown.changed")
    assert (changed["data"]["previous_level"], changed["data"]["level"]) == (0, 2)
    assert changed["data"]["cause"]["rules"][0]["signal"] == "bank_match"
    # From then on even a trusted account's image waits for a moderator.
    assert (ordinary["decision"], ordinary["lockdown_level"]) == ("hold", 2)
    assert [reason["code"] for reason in ordinary["reasons"]] == ["lockdown"]
    assert (lockdown["level"], lockdown["source"]) == (2, "automatic")
