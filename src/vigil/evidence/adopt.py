"""Known illegal images an older Vigil kept in the clear, moved into the vault.

Before the vault, a block-bank match or a rejection as illegal left the image as a plain file in
``images/``. On upgrade each is sealed and recorded like a new item (with a ``stored`` custody
entry saying where it came from), and the plain file deleted once that is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.actions.images import ImageStore
from vigil.clock import Clock
from vigil.evidence.vault import EvidenceCause, Vault, find_item_for_submission, reason_matches
from vigil.store.database import Database
from vigil.store.models import EvidenceItem, Submission

log = logging.getLogger(__name__)


def adopt_plain_copies(
    database: Database, vault: Vault, images: ImageStore, clock: Clock, *, actor: str
) -> int:
    """Seal every known illegal image still kept in the clear; returns how many were sealed."""
    with database.session() as session:
        waiting = _waiting(session)
    adopted = 0
    for submission_id in waiting:
        adopted += _adopt(database, vault, images, submission_id, actor=actor, now=clock.now())
    if adopted:
        log.info("sealed %d known illegal image(s) kept in the clear by an older Vigil", adopted)
    return adopted


def _waiting(session: Session) -> Sequence[str]:
    sealed = select(EvidenceItem.submission_id)
    return session.scalars(
        select(Submission.id).where(
            Submission.known_illegal.is_(True),
            Submission.image_path.is_not(None),
            Submission.id.not_in(sealed),
        )
    ).all()


def _adopt(
    database: Database,
    vault: Vault,
    images: ImageStore,
    submission_id: str,
    *,
    actor: str,
    now: datetime,
) -> int:
    with database.session() as session:
        path = session.scalar(select(Submission.image_path).where(Submission.id == submission_id))
    if path is None:
        return 0
    try:
        data = images.read(path)
    except FileNotFoundError:
        log.warning(
            "known illegal submission %s: its kept image %s is missing", submission_id, path
        )
        return 0
    sealed = vault.seal(data)
    try:
        with database.write_session() as session:
            submission = session.get(Submission, submission_id, with_for_update=True)
            if (
                submission is None
                or submission.image_path != path
                or find_item_for_submission(session, submission_id) is not None
            ):
                vault.discard(sealed)
                return 0
            cause = (
                EvidenceCause.BANK_MATCH
                if submission.initial_decision == "block" and reason_matches(submission.reasons)
                else EvidenceCause.CONFIRMED_ILLEGAL
            )
            vault.record(
                session,
                sealed,
                submission=submission,
                cause=cause,
                matches=reason_matches(submission.reasons),
                actor=actor,
                now=now,
                origin="adopted from the plain image store of an earlier version",
            )
            submission.image_path = None
    except BaseException:
        vault.discard(sealed)
        raise
    images.delete(path)
    return 1
