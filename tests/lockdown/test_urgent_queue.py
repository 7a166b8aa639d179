"""An item that may show a child and waits too long for the child-safety team pages on-call,
and the incident closes by itself once nothing urgent is overdue."""

from __future__ import annotations

from tests.lockdown.conftest import OpenSite, WatchedSite, photo
from vigil.actions.incidents import IncidentKind
from vigil.actions.reports import CommunityReport, ReportReason, receive_report
from vigil.actions.submissions import apply_review_decision
from vigil.policy import TrustLevel, UploaderContext, Verdict
from vigil.store.models import Page, Site, Submission

PAGING = {
    "channels": [{"name": "oncall", "kind": "webhook", "url": "http://127.0.0.1:9/pages"}],
    "tiers": [{"channels": ["oncall"]}],
    "urgent_unreviewed_minutes": 15,
}


def _urgent_item(watched: WatchedSite, seed: int) -> str:
    """A published image a member reports as child abuse: queued urgently, for child safety."""
    allowed = watched.upload(photo(seed), f"member-{seed}")
    assert allowed.submission.decision == "allow"
    outcome = receive_report(
        watched.runtime.screening,
        watched.site,
        CommunityReport(f"reporter-{seed}", ReportReason.CHILD_ABUSE, TrustLevel.BASIC),
        submission_id=allowed.submission.id,
        image=None,
        uploader=UploaderContext(),
        actor="test",
    )
    assert outcome.hide_requested
    return allowed.submission.id


def _decide(watched: WatchedSite, submission_ids: list[str], verdict: Verdict) -> None:
    """A child-safety moderator decides the items now."""
    with watched.runtime.database.write_session() as session:
        site = session.get(Site, watched.site.id)
        assert site is not None
        for submission_id in submission_ids:
            submission = session.get(Submission, submission_id)
            assert submission is not None
            apply_review_decision(
                session,
                submission,
                site,
                verdict,
                actor="user:cass",
                note=None,
                now=watched.clock.now(),
            )


def _pages(watched: WatchedSite) -> int:
    with watched.runtime.database.session() as session:
        return session.query(Page).count()


def test_an_urgent_item_unreviewed_too_long_pages_once_and_closes_when_decided(
    open_site: OpenSite,
) -> None:
    watched = open_site(paging=PAGING)
    first = _urgent_item(watched, 1)

    watched.clock.advance(minutes=14)
    watched.tick()
    assert watched.incidents(IncidentKind.URGENT_UNREVIEWED) == []

    watched.clock.advance(minutes=1)
    watched.tick()
    [incident] = watched.incidents(IncidentKind.URGENT_UNREVIEWED)
    assert incident.details["overdue"] == 1
    assert "1 urgent item(s) unreviewed" in incident.title
    assert _pages(watched) == 1

    # A second overdue item joins the open incident: no second page.
    second = _urgent_item(watched, 2)
    watched.clock.advance(minutes=15)
    watched.tick()
    [incident] = watched.incidents(IncidentKind.URGENT_UNREVIEWED)
    assert incident.trigger_count == 2
    assert incident.details["latest"]["overdue"] == 2
    assert _pages(watched) == 1
    watched.tick()
    assert watched.incidents(IncidentKind.URGENT_UNREVIEWED)[0].trigger_count == 2

    # Both decided: nothing urgent is overdue, and the incident closes by itself.
    _decide(watched, [first, second], Verdict.BLOCK)
    watched.clock.advance(seconds=5)
    watched.tick()
    [closed] = watched.incidents(IncidentKind.URGENT_UNREVIEWED)
    assert closed.resolved_at == watched.clock.now()
    assert closed.resolved_by == "vigil"
    assert [event.details["why"] for event in watched.audit("incident.resolved")] == [
        "no urgent item is overdue"
    ]


def test_an_urgent_item_reviewed_in_time_pages_no_one(open_site: OpenSite) -> None:
    watched = open_site(paging=PAGING)
    item = _urgent_item(watched, 3)
    watched.clock.advance(minutes=10)
    _decide(watched, [item], Verdict.ALLOW)

    watched.clock.advance(minutes=30)
    watched.tick()

    assert watched.incidents(IncidentKind.URGENT_UNREVIEWED) == []
    assert _pages(watched) == 0
