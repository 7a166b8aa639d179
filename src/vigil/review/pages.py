"""The moderators' pages: the queue, an item, an uploader, the site's status and audit log."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from vigil.actions.uploaders import clean_up_uploaders, reinstate_uploader
from vigil.api.auth import RuntimeDep, wake_worker
from vigil.errors import Forbidden, InvalidRequest, NotFound
from vigil.policy.decision import Priority
from vigil.review import queue, status
from vigil.review.accounts import Permission
from vigil.review.previews import PreviewStyle, PreviewUnavailable, render_preview
from vigil.review.uploaders import MAX_COMPARED, related_uploaders
from vigil.review.web import (
    NO_NUL,
    PREFIX,
    ChildSafety,
    Moderator,
    Reviewer,
    Viewer,
    render,
)
from vigil.runtime import Runtime
from vigil.store import audit
from vigil.store import banks as bank_store
from vigil.store import users as user_store
from vigil.store.models import Site, Submission, User
from vigil.store.sites import get_site
from vigil.store.submissions import get_submission
from vigil.store.uploaders import find_suspension

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_ID = Annotated[str, Query(max_length=200, pattern=NO_NUL)]
_NOTE = Annotated[str, Form(max_length=2000, pattern=NO_NUL)]
_FILTER = Annotated[str | None, Query(max_length=200, pattern=NO_NUL)]


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/queue", status_code=303)


@router.get("/queue")
def queue_page(request: Request, reviewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    now = runtime.clock.now()
    with runtime.database.session() as session:
        items = queue.pending(session, now)
        summary = queue.summary(session)
    return render(
        request,
        "queue.html",
        {
            "items": items,
            "summary": summary,
            "Priority": Priority,
            "may_handle": {
                item.submission.id: queue.may_handle(reviewer, item.submission) for item in items
            },
            "done": request.query_params.get("done"),
        },
        reviewer=reviewer,
    )


@router.post("/queue/next")
def review_next(reviewer: Moderator, runtime: RuntimeDep) -> RedirectResponse:
    """Claim the most urgent item no one else is reviewing, and open it."""
    with runtime.database.write_session() as session:
        found = queue.claim_next(
            session, reviewer, runtime.clock.now(), runtime.settings.review.claim_minutes
        )
    if found is None:
        return RedirectResponse(f"{PREFIX}/queue?done=empty", status_code=303)
    return RedirectResponse(f"{PREFIX}/items/{found}", status_code=303)


def _submission_and_site(session: Session, submission_id: str) -> tuple[Submission, Site]:
    submission = get_submission(session, submission_id)
    site = session.get(Site, submission.site_id)
    if site is None:
        raise NotFound(f"the site of submission {submission_id} no longer exists")
    return submission, site


def _may_see_image(reviewer: Reviewer, submission: Submission) -> bool:
    """Known illegal images are never shown to anyone; others only to those who may decide
    them, and never in "no images" mode."""
    return (
        not submission.known_illegal
        and submission.image_path is not None
        and reviewer.show_images
        and queue.may_handle(reviewer, submission)
    )


@router.get("/items/{submission_id}")
def item_page(
    submission_id: str, request: Request, reviewer: Viewer, runtime: RuntimeDep
) -> HTMLResponse:
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        submission, site = _submission_and_site(session, submission_id)
        claimed = queue.open_for_review(session, submission, reviewer, runtime.settings, now)
        claimant = None
        if not claimed and submission.claimed_by is not None and queue.claim_live(submission, now):
            user = session.get(User, submission.claimed_by)
            claimant = user.name if user is not None else None
        suspended = (
            submission.uploader_id is not None
            and find_suspension(session, site.id, submission.uploader_id) is not None
        )
    return render(
        request,
        "item.html",
        {
            "submission": submission,
            "site": site,
            "claimed": claimed,
            "claimant": claimant,
            "child_safety": queue.needs_child_safety(submission),
            "may_handle": queue.may_handle(reviewer, submission),
            "show_image": _may_see_image(reviewer, submission),
            "may_reject_illegal": reviewer.may(Permission.CHILD_SAFETY),
            "suspended": suspended,
            "priority": Priority.of_rank(submission.priority),
            "reveal_seconds": runtime.settings.review.reveal_seconds,
        },
        reviewer=reviewer,
    )


def _image_for(runtime: Runtime, reviewer: Reviewer, submission: Submission) -> bytes:
    if not _may_see_image(reviewer, submission) or submission.image_path is None:
        raise Forbidden("this image is not shown")
    try:
        return (runtime.images.root / submission.image_path).read_bytes()
    except OSError as error:
        raise PreviewUnavailable("the image file is missing") from error


def _jpeg(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/items/{submission_id}/preview")
def preview(submission_id: str, reviewer: Moderator, runtime: RuntimeDep) -> Response:
    """The blurred, greyscale preview."""
    with runtime.database.session() as session:
        submission, _ = _submission_and_site(session, submission_id)
    data = _image_for(runtime, reviewer, submission)
    return _jpeg(render_preview(data, PreviewStyle.BLURRED, runtime.settings))


@router.post("/items/{submission_id}/reveal")
def reveal(submission_id: str, reviewer: Moderator, runtime: RuntimeDep) -> Response:
    """The clear picture, for the moderator reviewing the item; every reveal is counted."""
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        submission, _ = _submission_and_site(session, submission_id)
        data = _image_for(runtime, reviewer, submission)
        if not queue.open_for_review(session, submission, reviewer, runtime.settings, now):
            raise Forbidden("open this item for review before revealing it")
        user_store.record_exposure(session, reviewer.user_id, submission.id, now)
        audit.append(session, reviewer.actor, "submission.revealed", submission.id, {})
    return _jpeg(render_preview(data, PreviewStyle.CLEAR, runtime.settings))


@router.post("/items/{submission_id}/decision")
def decide(
    submission_id: str,
    reviewer: Moderator,
    runtime: RuntimeDep,
    request: Request,
    decision: Annotated[queue.ReviewAction, Form()],
    note: _NOTE = "",
) -> RedirectResponse:
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        submission, site = _submission_and_site(session, submission_id)
        released = queue.decide(
            session,
            submission,
            site,
            reviewer,
            decision,
            runtime.settings,
            runtime.vault,
            runtime.images,
            note=note.strip() or None,
            now=now,
        )
    if released:
        runtime.images.delete(released)
    if decision is not queue.ReviewAction.ESCALATE:
        runtime.metrics.reviews.labels(
            "allow" if decision is queue.ReviewAction.APPROVE else "block"
        ).inc()
    wake_worker(request)
    with runtime.database.write_session() as session:
        following = queue.claim_next(
            session,
            reviewer,
            runtime.clock.now(),
            runtime.settings.review.claim_minutes,
            skip=submission_id,
        )
    if following is None:
        return RedirectResponse(f"{PREFIX}/queue?done={decision.value}", status_code=303)
    return RedirectResponse(f"{PREFIX}/items/{following}?done={decision.value}", status_code=303)


@router.post("/items/{submission_id}/release")
def release(submission_id: str, reviewer: Moderator, runtime: RuntimeDep) -> RedirectResponse:
    """Put the item back for someone else (a moderator who would rather not)."""
    with runtime.database.session() as session:
        submission, _ = _submission_and_site(session, submission_id)
        queue.release(session, submission.id, reviewer)
    return RedirectResponse(f"{PREFIX}/queue", status_code=303)


@router.get("/uploader")
def uploader_page(
    request: Request, reviewer: Viewer, runtime: RuntimeDep, site: _ID, id: _ID
) -> HTMLResponse:
    now = runtime.clock.now()
    with runtime.database.session() as session:
        found = get_site(session, site)
        submissions = queue.uploader_submissions(session, found.id, id)
        if not submissions:
            raise NotFound(f"no submissions from uploader {id!r} on site {site!r}")
        related = related_uploaders(session, found.id, id, submissions, runtime.settings, now)
        suspension = find_suspension(session, found.id, id)
    return render(
        request,
        "uploader.html",
        {
            "site": found,
            "uploader_id": id,
            "submissions": submissions,
            "related": related,
            "max_compared": MAX_COMPARED,
            "window_days": runtime.settings.review.related_window_days,
            "max_distance": runtime.settings.review.related_pdq_distance,
            "suspension": suspension,
            "pending": sum(1 for s in submissions if s.review_state == "pending"),
            "published": sum(1 for s in submissions if s.decision == "allow"),
            "done": request.query_params.get("done"),
        },
        reviewer=reviewer,
    )


@router.post("/uploader/clean-up")
def clean_up(
    request: Request,
    reviewer: Moderator,
    runtime: RuntimeDep,
    site: Annotated[str, Form(max_length=200, pattern=NO_NUL)],
    uploader: Annotated[str, Form(max_length=200, pattern=NO_NUL)],
    confirm: Annotated[bool, Form()] = False,
    related: Annotated[list[str] | None, Form()] = None,
    note: _NOTE = "",
) -> RedirectResponse:
    """Reject everything pending, ask the site to take down what it published and suspend the
    accounts: for this uploader and the related ones ticked."""
    if not confirm:
        raise InvalidRequest("tick the confirmation box to clean up these uploaders")
    uploaders = [uploader, *(related or [])]
    if len(uploaders) > 100 or any(len(one) > 200 or "\x00" in one for one in uploaders):
        raise InvalidRequest("clean up at most 100 uploaders at once, by their ids")
    reason = note.strip() or "bulk clean-up by a moderator"
    with runtime.database.write_session() as session:
        found = get_site(session, site)
        result = clean_up_uploaders(
            session, found, uploaders, reason=reason, actor=reviewer.actor, now=runtime.clock.now()
        )
    for _ in result.rejected:
        runtime.metrics.reviews.labels("block").inc()
    wake_worker(request)
    done = (
        f"rejected {len(result.rejected)}, asked to take down {len(result.taken_down)}, "
        f"suspended {len(result.suspended)}"
    )
    if result.left_for_child_safety:
        done += f", left {len(result.left_for_child_safety)} for the child-safety team"

    return RedirectResponse(
        f"{PREFIX}/uploader?{urlencode({'site': site, 'id': uploader, 'done': done})}",
        status_code=303,
    )


@router.post("/uploader/reinstate")
def reinstate(
    request: Request,
    reviewer: ChildSafety,
    runtime: RuntimeDep,
    site: Annotated[str, Form(max_length=200, pattern=NO_NUL)],
    uploader: Annotated[str, Form(max_length=200, pattern=NO_NUL)],
) -> RedirectResponse:
    """Lift an uploader's suspension: for the child-safety team, who suspend on illegal images."""
    with runtime.database.write_session() as session:
        found = get_site(session, site)
        lifted = reinstate_uploader(
            session, found, uploader, actor=reviewer.actor, now=runtime.clock.now()
        )
    wake_worker(request)
    done = "suspension lifted" if lifted else "not suspended"
    return RedirectResponse(
        f"{PREFIX}/uploader?{urlencode({'site': site, 'id': uploader, 'done': done})}",
        status_code=303,
    )


@router.get("/status")
def status_page(request: Request, reviewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    now = runtime.clock.now()
    with runtime.database.session() as session:
        hours = status.hourly_counts(session, now)
        summary = queue.summary(session)
        banks = bank_store.list_banks(session)
    return render(
        request,
        "status.html",
        {
            "hours": hours,
            "chart": status.chart(hours),
            "totals": {
                "screened": sum(hour.screened for hour in hours),
                "allowed": sum(hour.allowed for hour in hours),
                "held": sum(hour.held for hour in hours),
                "blocked": sum(hour.blocked for hour in hours),
            },
            "summary": summary,
            "banks": banks,
        },
        reviewer=reviewer,
    )


@router.get("/audit")
def audit_page(
    request: Request,
    reviewer: Viewer,
    runtime: RuntimeDep,
    actor: _FILTER = None,
    action: Annotated[str | None, Query(max_length=50, pattern=NO_NUL)] = None,
    subject: _FILTER = None,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> HTMLResponse:
    wanted = status.AuditFilter(actor or None, action or None, subject or None, before)
    with runtime.database.session() as session:
        found = status.audit_page(session, wanted)
        actions = status.audit_actions(session)
    events = found[: status.AUDIT_PAGE]
    return render(
        request,
        "audit.html",
        {
            "events": events,
            "actions": actions,
            "wanted": wanted,
            "older": events[-1].id if len(found) > status.AUDIT_PAGE else None,
        },
        reviewer=reviewer,
    )
