"""Decision webhooks reach the site's real HTTP endpoint: signed, retried, never lost."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.api.conftest import hold_exactly, screen
from tests.images import encode, make_photo
from tests.receiver import wait_until, webhook_receiver
from vigil.actions.webhooks import sign, verify_signature
from vigil.api import create_app
from vigil.config import Settings
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.store.models import WebhookDelivery

FAST_RETRIES = {"retry_base_seconds": 0.2, "retry_max_seconds": 1.0, "poll_seconds": 0.05}


def _held_submission(client: TestClient, headers: dict[str, str], seed: int) -> str:
    """Screen an image that a hold bank holds; returns the submission id."""
    image = encode(make_photo(seed=seed), "JPEG")
    hold_exactly(client, headers, image)
    held = screen(client, headers, image, {"uploader_id": "u1", "ref": f"post-{seed}"}).json()
    assert held["decision"] == "hold"
    return str(held["submission_id"])


def _start(
    make_settings: Callable[..., Settings],
    make_runtime: Callable[[Settings], Runtime],
    **webhooks: Any,
) -> tuple[Runtime, dict[str, str]]:
    runtime = make_runtime(make_settings(webhooks={**FAST_RETRIES, **webhooks}))
    key = ensure_bootstrap_key(runtime.database)
    return runtime, {"Authorization": f"Bearer {key}"}


def _deliveries(runtime: Runtime) -> list[WebhookDelivery]:
    with runtime.database.session() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_a_decision_is_delivered_signed_and_retried_after_the_receiver_fails(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    runtime, headers = _start(make_settings, make_runtime)
    with webhook_receiver(statuses=[500]) as receiver, TestClient(create_app(runtime)) as client:
        secret = client.put("/v1/webhook", headers=headers, json={"url": receiver.url}).json()[
            "secret"
        ]
        submission = _held_submission(client, headers, seed=1)

        client.post(
            f"/v1/submissions/{submission}/decision",
            headers=headers,
            json={"decision": "allow", "note": "ok"},
        )
        wait_until(lambda: receiver.delivered(), what="a successful delivery")

    first, second = receiver.requests[:2]
    assert (first.answered, second.answered) == (500, 200)
    assert first.headers["Vigil-Event-Id"] == second.headers["Vigil-Event-Id"], (
        "a retry is the same event"
    )
    assert first.body == second.body
    assert verify_signature(secret, second.headers["Vigil-Signature"], second.body)
    assert not verify_signature("whsec_wrong", second.headers["Vigil-Signature"], second.body)
    event = json.loads(second.body)
    assert event["type"] == "submission.decided"
    assert event["data"]["submission_id"] == submission
    assert event["data"]["decision"] == "allow"
    assert event["data"]["previous_decision"] == "hold"
    assert event["data"]["ref"] == "post-1"
    assert event["data"]["note"] == "ok"
    [delivery] = _deliveries(runtime)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)


def test_a_restart_loses_no_notification(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    settings = make_settings(webhooks=FAST_RETRIES, workers={"embedded": False})
    runtime = make_runtime(settings)
    headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
    with webhook_receiver() as receiver:
        # First process: the decision is taken, but no worker runs before it stops.
        with TestClient(create_app(runtime)) as client:
            client.put("/v1/webhook", headers=headers, json={"url": receiver.url})
            submission = _held_submission(client, headers, seed=2)
            client.post(
                f"/v1/submissions/{submission}/decision",
                headers=headers,
                json={"decision": "block"},
            )
        runtime.close()
        assert receiver.requests == []

        # The next process delivers what the first one wrote to the outbox.
        restarted = make_runtime(
            settings.model_copy(
                update={"workers": settings.workers.model_copy(update={"embedded": True})}
            )
        )
        with TestClient(create_app(restarted)):
            wait_until(lambda: receiver.delivered(), what="delivery after the restart")

    assert json.loads(receiver.requests[0].body)["data"]["decision"] == "block"


def test_delivery_gives_up_after_the_configured_attempts_and_says_why(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    runtime, headers = _start(make_settings, make_runtime, max_attempts=3)
    with (
        webhook_receiver(statuses=[503] * 10) as receiver,
        TestClient(create_app(runtime)) as client,
    ):
        client.put("/v1/webhook", headers=headers, json={"url": receiver.url})
        submission = _held_submission(client, headers, seed=3)
        client.post(
            f"/v1/submissions/{submission}/decision", headers=headers, json={"decision": "allow"}
        )
        wait_until(
            lambda: _deliveries(runtime)[0].status == "failed", what="the delivery to be given up"
        )

    [delivery] = _deliveries(runtime)
    assert delivery.attempts == 3
    assert "503" in (delivery.last_error or "")
    assert len(receiver.requests) == 3


def test_two_workers_never_deliver_one_event_twice(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> None:
    from vigil.workers.webhooks import WebhookDeliverer

    settings = make_settings(webhooks=FAST_RETRIES, workers={"embedded": False})
    runtime = make_runtime(settings)
    headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
    with webhook_receiver(delay_seconds=0.05) as receiver:
        with TestClient(create_app(runtime)) as client:
            client.put("/v1/webhook", headers=headers, json={"url": receiver.url})
            for seed in range(10, 16):
                submission = _held_submission(client, headers, seed=seed)
                client.post(
                    f"/v1/submissions/{submission}/decision",
                    headers=headers,
                    json={"decision": "allow"},
                )
        workers = [
            WebhookDeliverer(runtime.database, settings.webhooks, runtime.metrics) for _ in range(3)
        ]
        threads = [threading.Thread(target=worker.deliver_due) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for worker in workers:
            worker.close()

    event_ids = [request.headers["Vigil-Event-Id"] for request in receiver.requests]
    assert len(event_ids) == 6
    assert len(set(event_ids)) == 6
    assert all(delivery.status == "delivered" for delivery in _deliveries(runtime))


def test_a_site_without_a_webhook_gets_no_outbox_rows(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    submission = _held_submission(client, admin_headers, seed=4)
    client.post(
        f"/v1/submissions/{submission}/decision", headers=admin_headers, json={"decision": "allow"}
    )
    assert _deliveries(runtime) == []


def test_the_webhook_endpoint_can_be_read_rotated_and_switched_off(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    first = client.put(
        "/v1/webhook", headers=admin_headers, json={"url": "https://forum.example/hook"}
    ).json()
    same = client.put(
        "/v1/webhook", headers=admin_headers, json={"url": "https://forum.example/hook2"}
    ).json()
    rotated = client.put(
        "/v1/webhook",
        headers=admin_headers,
        json={"url": "https://forum.example/hook2", "rotate_secret": True},
    ).json()
    off = client.put("/v1/webhook", headers=admin_headers, json={"url": None}).json()
    bad = client.put("/v1/webhook", headers=admin_headers, json={"url": "not a url"})

    assert first["secret"].startswith("whsec_")
    assert same["secret"] == first["secret"]
    assert rotated["secret"] != first["secret"]
    assert off["url"] is None
    assert bad.status_code == 422
    assert client.get("/v1/webhook", headers=admin_headers).json()["url"] is None


def test_signatures_are_refused_when_tampered_stale_or_malformed() -> None:
    body = b'{"id":"1"}'
    now = int(time.time())
    header = sign("whsec_s", body, now)

    assert verify_signature("whsec_s", header, body)
    assert not verify_signature("whsec_s", header, body + b" ")
    assert not verify_signature("whsec_s", sign("whsec_s", body, now - 3600), body)
    assert not verify_signature("whsec_s", "garbage", body)
    assert not verify_signature("whsec_s", "t=abc,v1=00", body)
    # During a secret rotation a sender may include several signatures; one valid one suffices.
    rotated = f"{header},v1={'0' * 64}"
    assert verify_signature("whsec_s", rotated, body)


def test_retry_delays_double_and_are_capped(settings: Settings, runtime: Runtime) -> None:
    from vigil.workers.webhooks import WebhookDeliverer

    deliverer = WebhookDeliverer(runtime.database, settings.webhooks, runtime.metrics)
    base, cap = settings.webhooks.retry_base_seconds, settings.webhooks.retry_max_seconds
    try:
        delays = [deliverer.backoff_seconds(attempt) for attempt in range(1, 20)]
    finally:
        deliverer.close()

    assert base * 0.8 <= delays[0] <= base * 1.2
    assert 2 * base * 0.8 <= delays[1] <= 2 * base * 1.2
    assert max(delays) <= cap * 1.2
    assert delays[-1] >= cap * 0.8
