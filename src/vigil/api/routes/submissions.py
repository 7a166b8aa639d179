"""Submissions: their current state, and a moderator's decision on a held one."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vigil.actions.submissions import apply_review_decision
from vigil.api.auth import ModeratorKey, RuntimeDep, ScreenKey, wake_worker
from vigil.api.schemas import DecisionRequest, ErrorResponse, SubmissionResponse
from vigil.errors import NotFound
from vigil.policy import Verdict
from vigil.store.models import Site
from vigil.store.sites import Principal, Role
from vigil.store.submissions import get_submission

router = APIRouter(prefix="/v1/submissions", tags=["submissions"])
_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorResponse}}


def _visible_to(principal: Principal) -> int | None:
    """Admins see every site's submissions; other keys only their own site's."""
    return None if principal.role is Role.ADMIN else principal.site.id


@router.get("/{submission_id}", response_model=SubmissionResponse, responses=_NOT_FOUND)
def read_submission(
    submission_id: str,
    principal: ScreenKey,
    runtime: RuntimeDep,
) -> SubmissionResponse:
    """The current state: a held submission's decision changes once a moderator decides."""
    with runtime.database.session() as session:
        submission = get_submission(session, submission_id, site_id=_visible_to(principal))
        return SubmissionResponse.of(submission)


@router.post(
    "/{submission_id}/decision",
    response_model=SubmissionResponse,
    responses={**_NOT_FOUND, 409: {"model": ErrorResponse, "description": "Not awaiting review."}},
)
def decide_submission(
    submission_id: str,
    body: DecisionRequest,
    request: Request,
    principal: ModeratorKey,
    runtime: RuntimeDep,
) -> SubmissionResponse:
    """Approve (``allow``) or reject (``block``) a held submission; the site gets a webhook."""
    with runtime.database.write_session() as session:
        submission = get_submission(session, submission_id, site_id=_visible_to(principal))
        site = session.get(Site, submission.site_id)
        if site is None:
            raise NotFound(f"the site of submission {submission_id} no longer exists")
        released = apply_review_decision(
            session,
            submission,
            site,
            Verdict(body.decision),
            actor=principal.actor,
            note=body.note,
            now=runtime.clock.now(),
        )
        result = SubmissionResponse.of(submission)
    if released:
        runtime.images.delete(released)
    runtime.metrics.reviews.labels(body.decision).inc()
    wake_worker(request)
    return result
