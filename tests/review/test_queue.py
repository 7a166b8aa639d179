"""The review queue in the moderators' app: its order, claims, decisions, escalation and the
child-safety path, on a real app over real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.api.conftest import screen
from tests.images import encode, make_photo
from tests.receiver import Received, WebhookReceiver, wait_until, webhook_receiver
from tests.review.conftest import (
    Browsers,
    add_user,
    held_upload,
    set_site_webhook,
    signed_in,
)
from vigil.actions.images import ImageStore
from vigil.actions.webhooks import verify_signature
from vigil.evidence.vault import find_item_for_submission
from vigil.policy.decision import CHILD_SAFETY, Priority
from vigil.review import queue
from vigil.review.accounts import UserRole
from vigil.review.web import Reviewer
from vigil.runtime import Runtime
from vigil.store.models import AuditEvent, BankHash, Site, Submission, User
from vigil.store.types import utcnow
from vigil.store.uploaders import find_suspension

ILLEGAL_BANK = "team-confirmed"
_ITEM_LINK = re.compile(r'href="/review/items/([0-9a-f-]{36})"')


def submission(runtime: Runtime, submission_id: str) -> Submission:
    with runtime.database.session() as session:
        return session.get_one(Submission, submission_id)


def arrange(runtime: Runtime, submission_id: str, **values: Any) -> None:
    """Set columns of a submission directly (its priority, age, claim...)."""
    with runtime.database.session() as session:
        session.execute(update(Submission).where(Submission.id == submission_id).values(**values))


def user_id(runtime: Runtime, name: str) -> int:
    with runtime.database.session() as session:
        found = session.scalar(select(User.id).where(User.name == name))
        assert found is not None
        return found


def webhook_secret(runtime: Runtime, site: str = "default") -> str:
    with runtime.database.session() as session:
        secret = session.scalar(select(Site.webhook_secret).where(Site.name == site))
        assert secret
        return secret


def events_of(receiver: WebhookReceiver, event_type: str) -> list[tuple[Received, dict[str, Any]]]:
    return [
        (request, event)
        for request in receiver.delivered()
        if (event := json.loads(request.body))["type"] == event_type
    ]


def reviews_counted(runtime: Runtime, decision: str) -> float:
    value = runtime.metrics.registry.get_sample_value(
        "vigil_review_decisions_total", {"decision": decision}
    )
    return value or 0.0


def audit_actions(runtime: Runtime, subject: str) -> list[tuple[str, str]]:
    with runtime.database.session() as session:
        rows = session.execute(
            select(AuditEvent.actor, AuditEvent.action)
            .where(AuditEvent.subject == subject)
            .order_by(AuditEvent.id)
        ).all()
        return [(actor, action) for actor, action in rows]


def has_file(runtime: Runtime, submission_id: str) -> bool:
    return runtime.images.exists(ImageStore.relative_path(submission_id))


# --- the queue's order -------------------------------------------------------------------------


def test_the_queue_lists_only_pending_items_most_urgent_first_then_oldest_first(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    api = app_client()
    normal_new, high_new, urgent, normal_old, high_old, decided = (
        held_upload(api, site_headers, seed=seed) for seed in range(1, 7)
    )
    now = utcnow()
    arrange(runtime, normal_old, created_at=now - timedelta(hours=5))
    arrange(runtime, normal_new, created_at=now - timedelta(hours=1))
    arrange(runtime, high_old, priority=Priority.HIGH.rank, created_at=now - timedelta(hours=2))
    arrange(runtime, high_new, priority=Priority.HIGH.rank, created_at=now - timedelta(minutes=5))
    arrange(
        runtime,
        urgent,
        priority=Priority.URGENT.rank,
        flags=[CHILD_SAFETY],
        created_at=now - timedelta(minutes=1),
    )
    arrange(runtime, decided, created_at=now - timedelta(hours=9))
    answer = api.post(
        f"/v1/submissions/{decided}/decision", headers=site_headers, json={"decision": "block"}
    )
    assert answer.status_code == 200, answer.text
    published = screen(
        api,
        site_headers,
        encode(make_photo(400, 300, seed=7), "JPEG"),
        {"uploader_id": "veteran", "trust_level": "trusted"},
    ).json()
    assert published["decision"] == "allow"

    viewer = signed_in(runtime, app_client, "vera", UserRole.VIEWER)
    page = viewer.get("/review/queue")

    assert page.status_code == 200
    listed = list(dict.fromkeys(_ITEM_LINK.findall(page.text)))
    assert listed == [urgent, high_old, high_new, normal_old, normal_new]
    assert '<strong id="queue-size">5</strong> waiting' in page.text
    assert "1 for the child-safety team" in page.text

    # "Review next" follows the same order: the child-safety team gets the urgent item first,
    # a moderator (who may not open it) the oldest of the high ones.
    moderator = signed_in(runtime, app_client, "mona", UserRole.MODERATOR)
    child_safety = signed_in(runtime, app_client, "cass", UserRole.CHILD_SAFETY)
    assert moderator.review_next() == high_old
    assert child_safety.review_next() == urgent


# --- claims ------------------------------------------------------------------------------------


def test_an_item_one_moderator_opened_is_look_only_for_another(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    item = held_upload(app_client(), site_headers, seed=11)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    bob = signed_in(runtime, app_client, "bob", UserRole.MODERATOR)

    opened = alice.get(f"/review/items/{item}")
    looked = bob.get(f"/review/items/{item}")
    refused = bob.decide(item, "approve")

    assert 'id="decide"' in opened.text
    assert "alice is reviewing this item" in looked.text
    assert 'id="decide"' not in looked.text
    assert 'id="reveal"' not in looked.text
    assert refused.status_code == 409
    after = submission(runtime, item)
    assert (after.review_state, after.decision) == ("pending", "hold")
    assert after.claimed_by == user_id(runtime, "alice")
    assert after.image_path is not None
    assert has_file(runtime, item)
    # The queue shows who has it.
    row = re.search(rf"/review/items/{item}.*?</tr>", bob.get("/review/queue").text, re.S)
    assert row is not None
    assert "<td>alice</td>" in row.group(0)


def test_review_next_gives_two_moderators_different_items(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    api = app_client()
    items = {held_upload(api, site_headers, seed=seed) for seed in (21, 22)}
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    bob = signed_in(runtime, app_client, "bob", UserRole.MODERATOR)
    carol = signed_in(runtime, app_client, "carol", UserRole.MODERATOR)

    first, second, third = alice.review_next(), bob.review_next(), carol.review_next()

    assert first is not None
    assert second is not None
    assert {first, second} == items
    assert third is None, "both items are being reviewed: nothing is left for a third person"
    assert submission(runtime, first).claimed_by == user_id(runtime, "alice")
    assert submission(runtime, second).claimed_by == user_id(runtime, "bob")
    # Asking again gives a moderator back the item they already have, not someone else's.
    assert alice.review_next() == first


def test_a_claim_lapses_after_the_claim_time_and_then_another_moderator_takes_the_item(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    item = held_upload(app_client(), site_headers, seed=31)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    bob = signed_in(runtime, app_client, "bob", UserRole.MODERATOR)
    alice.get(f"/review/items/{item}")
    claimed = submission(runtime, item)
    expected_end = utcnow() + timedelta(minutes=runtime.settings.review.claim_minutes)
    assert claimed.claim_expires_at is not None
    assert abs((claimed.claim_expires_at - expected_end).total_seconds()) < 60
    assert bob.review_next() is None

    arrange(runtime, item, claim_expires_at=utcnow() - timedelta(seconds=1))
    taken = bob.review_next()
    late = alice.decide(item, "approve")

    assert taken == item
    assert submission(runtime, item).claimed_by == user_id(runtime, "bob")
    assert 'id="decide"' in bob.get(f"/review/items/{item}").text
    assert late.status_code == 409, "alice's claim lapsed: her decision no longer counts"
    assert bob.decide(item, "reject").status_code == 303
    assert submission(runtime, item).decided_by == "user:bob"


def test_putting_an_item_back_lets_another_moderator_take_it(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    item = held_upload(app_client(), site_headers, seed=41)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    bob = signed_in(runtime, app_client, "bob", UserRole.MODERATOR)
    assert alice.review_next() == item
    assert bob.review_next() is None

    put_back = alice.post(f"/review/items/{item}/release")

    assert put_back.status_code == 303
    assert put_back.headers["location"] == "/review/queue"
    released = submission(runtime, item)
    assert (released.claimed_by, released.claim_expires_at) == (None, None)
    opened = bob.get(f"/review/items/{item}")
    assert 'id="decide"' in opened.text
    assert submission(runtime, item).claimed_by == user_id(runtime, "bob")
    # Someone else's "put back" does not take the item away from its reviewer.
    alice.post(f"/review/items/{item}/release")
    assert submission(runtime, item).claimed_by == user_id(runtime, "bob")


def test_two_simultaneous_claims_of_one_item_have_exactly_one_winner(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    api = app_client()
    items = [held_upload(api, site_headers, seed=seed) for seed in range(51, 56)]
    reviewers = []
    for name in ("alice", "bob"):
        add_user(runtime, name, UserRole.MODERATOR)
        reviewers.append(Reviewer(user_id(runtime, name), name, UserRole.MODERATOR, True, "-"))

    for item in items:
        won = race_to_claim(runtime, item, reviewers)

        assert sorted(won.values()) == [False, True], won
        [winner] = [name for name, ok in won.items() if ok]
        assert submission(runtime, item).claimed_by == user_id(runtime, winner)


def race_to_claim(runtime: Runtime, item: str, reviewers: list[Reviewer]) -> dict[str, bool]:
    """Each reviewer claims the item at once, in a transaction of their own; who won."""
    barrier = threading.Barrier(len(reviewers))
    won: dict[str, bool] = {}

    def claim(reviewer: Reviewer) -> None:
        with runtime.database.session() as session:
            session.connection()  # both transactions are open before either claims
            barrier.wait(timeout=10)
            won[reviewer.name] = queue.claim(session, item, reviewer, utcnow(), 15)

    threads = [threading.Thread(target=claim, args=(reviewer,)) for reviewer in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return won


# --- decisions ---------------------------------------------------------------------------------


def test_approving_publishes_deletes_the_kept_file_and_tells_the_site(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    with webhook_receiver() as receiver:
        set_site_webhook(runtime, receiver.url)
        secret = webhook_secret(runtime)
        item = held_upload(app_client(), site_headers, seed=61)
        alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
        assert has_file(runtime, item)
        before = reviews_counted(runtime, "allow")

        alice.get(f"/review/items/{item}")
        answer = alice.decide(item, "approve", note="harmless")
        wait_until(
            lambda: bool(events_of(receiver, "submission.decided")), what="the decision webhook"
        )

    assert answer.status_code == 303
    decided = submission(runtime, item)
    assert (decided.decision, decided.review_state) == ("allow", "decided")
    assert (decided.decided_by, decided.decision_note) == ("user:alice", "harmless")
    assert decided.image_path is None
    assert not has_file(runtime, item), "Vigil keeps no copy of an image it allowed"
    assert reviews_counted(runtime, "allow") == before + 1
    [(request, event)] = events_of(receiver, "submission.decided")
    assert verify_signature(secret, request.headers["Vigil-Signature"], request.body)
    assert not verify_signature("whsec_other", request.headers["Vigil-Signature"], request.body)
    assert event["data"]["submission_id"] == item
    assert event["data"]["decision"] == "allow"
    assert event["data"]["previous_decision"] == "hold"
    assert event["data"]["illegal"] is False
    assert ("user:alice", "submission.decided") in audit_actions(runtime, item)


def test_rejecting_blocks_and_keeps_the_file(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    with webhook_receiver() as receiver:
        set_site_webhook(runtime, receiver.url)
        secret = webhook_secret(runtime)
        item = held_upload(app_client(), site_headers, seed=71)
        alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
        before = reviews_counted(runtime, "block")

        alice.get(f"/review/items/{item}")
        answer = alice.decide(item, "reject")
        wait_until(
            lambda: bool(events_of(receiver, "submission.decided")), what="the decision webhook"
        )

    assert answer.status_code == 303
    decided = submission(runtime, item)
    assert (decided.decision, decided.review_state, decided.known_illegal) == (
        "block",
        "decided",
        False,
    )
    assert decided.image_path is not None
    assert has_file(runtime, item)
    assert reviews_counted(runtime, "block") == before + 1
    [(request, event)] = events_of(receiver, "submission.decided")
    assert verify_signature(secret, request.headers["Vigil-Signature"], request.body)
    assert (event["data"]["decision"], event["data"]["illegal"]) == ("block", False)


def test_after_a_decision_the_next_item_opens_and_the_queue_when_none_is_left(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    api = app_client()
    first = held_upload(api, site_headers, seed=81)
    second = held_upload(api, site_headers, seed=82)
    arrange(runtime, first, created_at=utcnow() - timedelta(minutes=10))
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)

    assert alice.review_next() == first
    onwards = alice.decide(first, "approve")
    assert onwards.status_code == 303
    assert onwards.headers["location"] == f"/review/items/{second}?done=approve"
    assert submission(runtime, second).claimed_by == user_id(runtime, "alice")
    shown = alice.get(onwards.headers["location"])
    assert "Done: approve. This is the next item." in shown.text
    assert 'id="decide"' in shown.text

    finished = alice.decide(second, "reject")
    assert finished.headers["location"] == "/review/queue?done=reject"
    assert "The queue is empty." in alice.get(finished.headers["location"]).text


def test_an_item_cannot_be_decided_twice(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    item = held_upload(app_client(), site_headers, seed=91)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    alice.get(f"/review/items/{item}")
    assert alice.decide(item, "reject").status_code == 303
    counted = reviews_counted(runtime, "allow") + reviews_counted(runtime, "block")

    again = alice.decide(item, "approve")

    assert again.status_code == 409
    after = submission(runtime, item)
    assert (after.decision, after.review_state) == ("block", "decided")
    assert has_file(runtime, item)
    assert reviews_counted(runtime, "allow") + reviews_counted(runtime, "block") == counted
    page = alice.get(f"/review/items/{item}").text
    assert "Decided <strong>block</strong> by user:alice" in page
    assert 'id="decide"' not in page


# --- escalation --------------------------------------------------------------------------------


def test_an_escalated_item_leaves_moderators_and_waits_for_the_child_safety_team(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    item = held_upload(app_client(), site_headers, seed=101)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    bob = signed_in(runtime, app_client, "bob", UserRole.MODERATOR)
    cass = signed_in(runtime, app_client, "cass", UserRole.CHILD_SAFETY)
    alice.get(f"/review/items/{item}")

    escalated = alice.decide(item, "escalate", note="may be a minor")

    assert escalated.status_code == 303
    after = submission(runtime, item)
    assert after.priority == Priority.URGENT.rank
    assert CHILD_SAFETY in after.flags
    assert (after.claimed_by, after.claim_expires_at) == (None, None)
    assert (after.review_state, after.decision) == ("pending", "hold")
    assert ("user:alice", "submission.escalated") in audit_actions(runtime, item)
    # Moderators can no longer take it, nor decide it.
    assert bob.review_next() is None
    assert alice.review_next() is None
    looked = bob.get(f"/review/items/{item}").text
    assert "only the child-safety team reviews it" in looked
    assert 'id="decide"' not in looked
    assert "<img" not in looked
    assert bob.decide(item, "approve").status_code == 403
    assert bob.client.get(f"/review/items/{item}/preview").status_code == 403
    assert submission(runtime, item).claimed_by is None
    # The child-safety team gets it, with the "reject as illegal" button.
    assert cass.review_next() == item
    page = cass.get(f"/review/items/{item}").text
    assert 'id="decide"' in page
    assert 'value="illegal"' in page
    assert cass.client.get(f"/review/items/{item}/preview").status_code == 200


# --- rejecting as illegal ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [{"illegal_bank": ILLEGAL_BANK}], indirect=True, ids=["named-bank"]
)
def test_rejecting_as_illegal_blocks_it_and_its_copies_for_good_and_suspends_the_uploader(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    photo = make_photo(640, 480, seed=111)
    original = encode(photo, "JPEG", quality=92)
    with webhook_receiver() as receiver:
        set_site_webhook(runtime, receiver.url)
        secret = webhook_secret(runtime)
        api = app_client()
        item = held_upload(api, site_headers, seed=0, uploader="bad-actor", image=original)
        cass = signed_in(runtime, app_client, "cass", UserRole.CHILD_SAFETY)
        cass.get(f"/review/items/{item}")

        answer = cass.decide(item, "illegal", note="confirmed")
        wait_until(
            lambda: (
                bool(events_of(receiver, "submission.decided"))
                and bool(events_of(receiver, "uploader.suspended"))
            ),
            what="the decision and suspension webhooks",
        )

        def upload(data: bytes, uploader: str) -> dict[str, Any]:
            context = {"uploader_id": uploader, "trust_level": "new"}
            response = screen(api, site_headers, data, context)
            assert response.status_code == 200, response.text
            return dict(response.json())

        repost = upload(original, "second-account")
        recompressed = upload(encode(photo, "JPEG", quality=60), "third-account")
        resized = upload(encode(photo.resize((600, 450)), "JPEG", quality=85), "fourth-account")
        unrelated = upload(encode(make_photo(640, 480, seed=112), "JPEG"), "bad-actor")
        control = upload(encode(make_photo(640, 480, seed=113), "JPEG"), "fifth-account")
        banks = {
            name: api.get(f"/v1/banks/{name}", headers=site_headers)
            for name in (ILLEGAL_BANK, f"{ILLEGAL_BANK}-sha256")
        }

    assert answer.status_code == 303
    decided = submission(runtime, item)
    assert (decided.decision, decided.review_state, decided.known_illegal) == (
        "block",
        "decided",
        True,
    )
    # Kept as evidence: sealed in the vault, and the review app's plain copy is gone.
    assert decided.image_path is None
    assert not has_file(runtime, item)
    with runtime.database.session() as session:
        assert find_item_for_submission(session, item) is not None
    actions = audit_actions(runtime, item)
    assert ("user:cass", "submission.decided") in actions
    assert ("user:cass", "evidence.preserved") in actions
    # The site is told: the decision (as illegal) and the uploader's suspension, both signed.
    [(request, decision)] = events_of(receiver, "submission.decided")
    assert verify_signature(secret, request.headers["Vigil-Signature"], request.body)
    assert decision["data"]["submission_id"] == item
    assert (decision["data"]["decision"], decision["data"]["illegal"]) == ("block", True)
    [request] = [
        request
        for request, event in events_of(receiver, "uploader.suspended")
        if event["data"]["uploader_id"] == "bad-actor"
    ]
    assert verify_signature(secret, request.headers["Vigil-Signature"], request.body)
    # Accounts that then post the known image are suspended by the match itself.
    with runtime.database.session() as session:
        site_id = submission(runtime, item).site_id
        suspended = {
            uploader: find_suspension(session, site_id, uploader) is not None
            for uploader in ("second-account", "third-account", "fourth-account", "fifth-account")
        }
    assert suspended == {
        "second-account": True,
        "third-account": True,
        "fourth-account": True,
        "fifth-account": False,
    }
    # Its hashes are in the local block banks.
    assert runtime.settings.review.illegal_bank == ILLEGAL_BANK
    assert {name: found.status_code for name, found in banks.items()} == {
        ILLEGAL_BANK: 200,
        f"{ILLEGAL_BANK}-sha256": 200,
    }
    perceptual, exact = banks[ILLEGAL_BANK].json(), banks[f"{ILLEGAL_BANK}-sha256"].json()
    assert (perceptual["hash_type"], perceptual["action"]) == ("pdq", "block")
    assert (exact["hash_type"], exact["action"], exact["hash_count"]) == ("sha256", "block", 1)
    assert perceptual["hash_count"] >= 1
    with runtime.database.session() as session:
        stored = set(session.scalars(select(BankHash.value)))
    assert decided.sha256 in stored
    assert {entry["hash"] for entry in decided.pdq} <= stored
    # A repost and near-copies are blocked by the banks, with no one asked to look at them.
    for copy in (repost, recompressed, resized):
        assert (copy["decision"], copy["review"]) == ("block", "none"), copy
        assert "bank_match" in {reason["code"] for reason in copy["reasons"]}
        assert submission(runtime, copy["submission_id"]).known_illegal
    assert {reason.get("bank") for reason in repost["reasons"]} >= {
        ILLEGAL_BANK,
        f"{ILLEGAL_BANK}-sha256",
    }
    for copy in (recompressed, resized):
        assert ILLEGAL_BANK in {reason.get("bank") for reason in copy["reasons"]}
    # The suspended uploader's next image is blocked whatever it shows; others are not.
    assert (unrelated["decision"], unrelated["review"]) == ("block", "none")
    unrelated_codes = [reason["code"] for reason in unrelated["reasons"]]
    assert unrelated_codes[0] == "uploader_suspended"
    assert "bank_match" not in unrelated_codes
    assert control["decision"] == "hold"
    pending = cass.get("/review/queue").text
    assert _ITEM_LINK.findall(pending) == [control["submission_id"]]


def test_a_moderator_cannot_reject_as_illegal(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    item = held_upload(app_client(), site_headers, seed=121)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    page = alice.get(f"/review/items/{item}").text
    assert 'value="illegal"' not in page
    assert 'value="escalate"' in page

    refused = alice.decide(item, "illegal")

    assert refused.status_code == 403
    after = submission(runtime, item)
    assert (after.review_state, after.known_illegal) == ("pending", False)
    with runtime.database.session() as session:
        assert session.scalar(select(BankHash.id).limit(1)) is None


# --- the API alongside the app -----------------------------------------------------------------


def test_the_api_decision_still_works_alongside_the_app(
    runtime: Runtime, app_client: Browsers, site_headers: dict[str, str]
) -> None:
    api = app_client()
    item = held_upload(api, site_headers, seed=131)
    alice = signed_in(runtime, app_client, "alice", UserRole.MODERATOR)
    alice.get(f"/review/items/{item}")

    decided = api.post(
        f"/v1/submissions/{item}/decision",
        headers=site_headers,
        json={"decision": "allow", "note": "from the site's own tools"},
    )

    assert decided.status_code == 200, decided.text
    assert (decided.json()["decision"], decided.json()["review"]) == ("allow", "decided")
    assert not has_file(runtime, item)
    assert reviews_counted(runtime, "allow") == 1
    # The app sees the decision and refuses to take another.
    assert alice.decide(item, "reject").status_code == 409
    page = alice.get(f"/review/items/{item}").text
    assert "Decided <strong>allow</strong>" in page
    assert item not in alice.get("/review/queue").text
    assert api.get(f"/v1/submissions/{item}", headers=site_headers).json()["decision"] == "allow"
