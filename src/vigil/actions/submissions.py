"""What a decision causes in the database: the submission row, the audit trail, the outbox."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from vigil.actions.webhooks import enqueue_event
from vigil.errors import Conflict
from vigil.intake import DecodedImage
from vigil.policy import Decision, UploaderContext, Verdict
from vigil.policy.uploader import EVIDENCE_ONLY_FIELDS
from vigil.signals.base import HashType, Signals
from vigil.signals.classifiers import ClassifierReport
from vigil.store import audit
from vigil.store.models import Site, Submission

REVIEW_NONE, REVIEW_PENDING, REVIEW_DECIDED = "none", "pending", "decided"
DECIDED_EVENT = "submission.decided"


def uploader_record(uploader: UploaderContext, *, for_evidence: bool = True) -> dict[str, Any]:
    """The context as stored; without ``for_evidence``, only what screening itself uses."""
    record = {
        key: value
        for key, value in asdict(uploader).items()
        if value is not None and (for_evidence or key not in EVIDENCE_ONLY_FIELDS)
    }
    if uploader.account_created_at is not None:
        record["account_created_at"] = uploader.account_created_at.isoformat()
    return record


def record_screening(
    session: Session,
    *,
    submission_id: str,
    site_id: int,
    site_name: str,
    idempotency_key: str | None,
    uploader: UploaderContext,
    image: DecodedImage,
    signals: Signals,
    decision: Decision,
    classification: ClassifierReport | None,
    image_path: str | None,
    actor: str,
    now: datetime,
    known_illegal: bool = False,
) -> Submission:
    """Write the submission and its audit entry (in the caller's transaction).

    ``known_illegal``: a block bank matched it, so no one is ever shown it.
    """
    reasons = [reason.as_dict() for reason in decision.reasons]
    classifications = classification.as_record() if classification is not None else []
    submission = Submission(
        id=submission_id,
        site_id=site_id,
        idempotency_key=idempotency_key,
        uploader_id=uploader.uploader_id,
        ref=uploader.ref,
        context=uploader_record(uploader, for_evidence=image_path is not None or known_illegal),
        sha256=signals.digests[HashType.SHA256],
        md5=signals.digests[HashType.MD5],
        sha1=signals.digests[HashType.SHA1],
        pdq=signals.pdq_record(),
        image_format=image.format.value,
        width=image.width,
        height=image.height,
        frame_count=image.frame_count,
        frames_screened=signals.frames_screened,
        byte_size=len(image.data),
        initial_decision=decision.verdict.value,
        decision=decision.verdict.value,
        reasons=reasons,
        classifications=classifications,
        review_state=REVIEW_PENDING if decision.review else REVIEW_NONE,
        priority=decision.priority.rank,
        flags=sorted(decision.flags),
        image_path=image_path,
        known_illegal=known_illegal,
        created_at=now,
    )
    session.add(submission)
    audit.append(
        session,
        actor,
        "submission.screened",
        submission_id,
        {
            "site": site_name,
            "decision": decision.verdict.value,
            "reasons": reasons,
            "classifications": classifications,
            "review": submission.review_state,
            "priority": decision.priority.value,
            "flags": submission.flags,
            "hashes": {
                "sha256": submission.sha256,
                "md5": submission.md5,
                "sha1": submission.sha1,
                "pdq": submission.pdq,
            },
            "context": submission.context,
            "format": submission.image_format,
            "byte_size": submission.byte_size,
        },
        at=now,
    )
    return submission


def apply_review_decision(
    session: Session,
    submission: Submission,
    site: Site,
    verdict: Verdict,
    *,
    actor: str,
    note: str | None,
    now: datetime,
    illegal: bool = False,
) -> str | None:
    """A moderator's decision on a held submission; the site is told by webhook.

    ``illegal``: the moderator rejected it as illegal (see :mod:`vigil.actions.child_safety`).

    Returns the image file that is no longer needed (an approved image), for the caller to delete
    once the transaction has committed.
    """
    if verdict is Verdict.HOLD:
        raise Conflict("a review decision is 'allow' or 'block'")
    if submission.review_state != REVIEW_PENDING:
        raise Conflict(
            f"submission {submission.id} is not awaiting review (decision: {submission.decision})"
        )
    previous = submission.decision
    submission.decision = verdict.value
    submission.review_state = REVIEW_DECIDED
    submission.decided_at = now
    submission.decided_by = actor
    submission.decision_note = note
    submission.claimed_by = submission.claim_expires_at = None
    audit.append(
        session,
        actor,
        DECIDED_EVENT,
        submission.id,
        {
            "decision": verdict.value,
            "previous_decision": previous,
            "note": note,
            "illegal": illegal,
        },
        at=now,
    )
    if site.webhook_url:
        enqueue_event(
            session,
            site.id,
            DECIDED_EVENT,
            {
                "submission_id": submission.id,
                "ref": submission.ref,
                "uploader_id": submission.uploader_id,
                "decision": verdict.value,
                "previous_decision": previous,
                "note": note,
                "illegal": illegal,
                "decided_at": now.isoformat(),
            },
            now,
        )
    if verdict is not Verdict.ALLOW:
        return None
    # An approved image is published by the site; Vigil keeps no copy of allowed images.
    released, submission.image_path = submission.image_path, None
    return released
