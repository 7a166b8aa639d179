"""Rejecting an image as illegal: keep it as evidence, stop it and its near-copies for good,
and suspend whoever uploaded it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.actions.images import ImageStore
from vigil.actions.submissions import apply_review_decision
from vigil.actions.uploaders import suspend_uploader
from vigil.config import Settings
from vigil.errors import Conflict
from vigil.evidence.vault import (
    EvidenceCause,
    Vault,
    find_item_for_submission,
    reason_matches,
)
from vigil.matching.banks import BankAction
from vigil.policy import Verdict
from vigil.policy.decision import CHILD_SAFETY
from vigil.signals.base import HashType
from vigil.store import audit
from vigil.store import banks as bank_store
from vigil.store.models import Bank, Site, Submission

EXACT_BANK_SUFFIX = "-sha256"


@dataclass(frozen=True)
class IllegalRejection:
    pdq_hashes_added: int
    sha256_added: int
    uploader_suspended: bool
    # The plain copy the review app kept, now sealed in the vault: delete it after the commit.
    released_image: str | None = None


def reject_as_illegal(
    session: Session,
    submission: Submission,
    site: Site,
    settings: Settings,
    vault: Vault,
    images: ImageStore,
    *,
    actor: str,
    note: str | None,
    now: datetime,
) -> IllegalRejection:
    """Block the submission as illegal (the site is told), keep its image as evidence, add its
    hashes to the local block banks so reposts and near-copies are blocked without anyone
    seeing them again, and suspend the uploader."""
    apply_review_decision(
        session, submission, site, Verdict.BLOCK, actor=actor, note=note, now=now, illegal=True
    )
    submission.known_illegal = True
    submission.flags = sorted({*submission.flags, CHILD_SAFETY})
    released = _preserve(session, submission, vault, images, actor=actor, now=now)
    audit.append(
        session,
        actor,
        "evidence.preserved",
        submission.id,
        {"sha256": submission.sha256, "image_kept": released is not None},
        at=now,
    )
    bank_name = settings.review.illegal_bank
    floor = settings.matching.pdq_quality_floor
    perceptual = [
        str(entry["hash"])
        for entry in submission.pdq
        if int(entry.get("quality", 0)) >= floor and "hash" in entry
    ]
    pdq_bank = _local_block_bank(
        session, bank_name, HashType.PDQ, settings.matching.pdq_threshold, actor
    )
    exact_bank = _local_block_bank(
        session, bank_name + EXACT_BANK_SUFFIX, HashType.SHA256, 0, actor
    )
    pdq_added = bank_store.add_hashes(session, pdq_bank, perceptual)
    sha_added = bank_store.add_hashes(session, exact_bank, [submission.sha256])
    audit.append(
        session,
        actor,
        "bank.add_hashes",
        bank_name,
        {"submission": submission.id, "pdq_added": pdq_added, "sha256_added": sha_added},
        at=now,
    )
    suspended = False
    if submission.uploader_id:
        suspended = suspend_uploader(
            session,
            site,
            submission.uploader_id,
            reason=f"submission {submission.id} was rejected as illegal",
            actor=actor,
            now=now,
        )
    return IllegalRejection(pdq_added, sha_added, suspended, released)


def _preserve(
    session: Session,
    submission: Submission,
    vault: Vault,
    images: ImageStore,
    *,
    actor: str,
    now: datetime,
) -> str | None:
    """Seal the held image into the vault; returns the plain copy to delete once committed.

    An image Vigil never kept (a report on a published image, by id) leaves nothing to seal:
    its hashes and context stay on the submission.
    """
    if submission.image_path is None or find_item_for_submission(session, submission.id):
        return None
    try:
        data = images.read(submission.image_path)
    except FileNotFoundError:
        return None
    sealed = vault.seal(data)
    vault.record(
        session,
        sealed,
        submission=submission,
        cause=EvidenceCause.CONFIRMED_ILLEGAL,
        matches=reason_matches(submission.reasons),
        actor=actor,
        now=now,
    )
    released, submission.image_path = submission.image_path, None
    return released


def _local_block_bank(
    session: Session, name: str, hash_type: HashType, threshold: int, actor: str
) -> Bank:
    bank = session.scalar(select(Bank).where(Bank.name == name))
    if bank is not None and bank.hash_type != hash_type.value:
        raise Conflict(
            f"bank {name!r} holds {bank.hash_type} hashes, not {hash_type.value}: "
            "set review.illegal_bank to a name of its own"
        )
    if bank is None:
        bank = bank_store.create_bank(
            session,
            name,
            hash_type,
            BankAction.BLOCK,
            threshold,
            description="Images moderators rejected as illegal in this Vigil.",
        )
        audit.append(
            session,
            actor,
            "bank.create",
            name,
            {
                "hash_type": hash_type.value,
                "action": BankAction.BLOCK.value,
                "threshold": threshold,
            },
        )
    return bank
