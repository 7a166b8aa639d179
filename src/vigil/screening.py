"""The screening path: intake -> signals -> matching -> policy -> actions, for one upload."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from vigil.actions import incidents
from vigil.actions.images import ImageStore
from vigil.actions.incidents import IncidentKind
from vigil.actions.submissions import record_screening
from vigil.actions.uploaders import suspend_uploader
from vigil.clock import Clock, SystemClock
from vigil.config import Settings
from vigil.errors import (
    EvidenceKeyError,
    IdempotencyConflict,
    IntakeError,
    ScreeningUnavailable,
    VigilError,
)
from vigil.evidence.vault import EvidenceCause, SealedFile, Vault, match_records
from vigil.intake import DecodedImage, open_image
from vigil.lockdown import control as lockdown
from vigil.lockdown import signals as site_signals
from vigil.lockdown.kinds import LockdownLevel
from vigil.lockdown.levels import SiteConditions
from vigil.matching.matcher import Matcher, MatchReport
from vigil.metrics import Metrics
from vigil.policy import (
    UPLOADS_PAUSED,
    Decision,
    ScreeningFacts,
    UploaderContext,
    Verdict,
    decide,
    is_low_trust,
)
from vigil.signals import BytesHasher, FrameHasher, Signals, default_hashers, hash_image
from vigil.signals.classifiers import ClassifierReport, ClassifierSuite
from vigil.store.database import Database
from vigil.store.models import Site, Submission
from vigil.store.sites import SiteRef
from vigil.store.submissions import find_by_idempotency_key
from vigil.store.uploaders import find_suspension

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """Everything screening established about one image, before anything is recorded."""

    image: DecodedImage
    signals: Signals
    matches: MatchReport
    decision: Decision
    classification: ClassifierReport | None = None


@dataclass(frozen=True)
class ScreeningOutcome:
    submission: Submission
    replayed: bool  # an Idempotency-Key returned an earlier submission
    classification: ClassifierReport | None = None
    conditions: SiteConditions = field(default_factory=SiteConditions)
    # This upload got its uploader suspended (it matched a block bank).
    uploader_suspended: bool = False

    @property
    def uploads_paused(self) -> bool:
        return any(reason.get("code") == UPLOADS_PAUSED for reason in self.submission.reasons)


class Screener:
    def __init__(
        self,
        settings: Settings,
        matcher: Matcher,
        *,
        classifiers: ClassifierSuite | None = None,
        bytes_hashers: Sequence[BytesHasher] | None = None,
        frame_hashers: Sequence[FrameHasher] | None = None,
    ) -> None:
        default_bytes, default_frames = default_hashers(settings.matching)
        self.settings = settings
        self.matcher = matcher
        self.classifiers = classifiers or ClassifierSuite.from_settings(settings)
        self.bytes_hashers = list(bytes_hashers if bytes_hashers is not None else default_bytes)
        self.frame_hashers = list(frame_hashers if frame_hashers is not None else default_frames)

    def evaluate(
        self,
        data: bytes,
        uploader: UploaderContext,
        now: datetime | None = None,
        *,
        uploader_suspended: bool = False,
        conditions: SiteConditions | None = None,
    ) -> Evaluation:
        """Decode, hash, match, classify and decide; records nothing. Raises IntakeError for
        bad input."""
        now = now or SystemClock().now()
        conditions = conditions or SiteConditions()
        image = open_image(data, self.settings.intake)
        sample = (
            self.classifiers.sample(image.frames_to_screen) if self.classifiers.configured else ()
        )
        signals, frames = hash_image(image, self.bytes_hashers, self.frame_hashers, sample)
        matches = self.matcher.match(signals)
        facts = ScreeningFacts(
            matches,
            image.frame_count,
            signals.frames_screened,
            uploader_suspended=uploader_suspended,
            conditions=conditions,
        )
        classification = None
        # An image a block bank knows is blocked whatever a model thinks of it, and one refused
        # while uploads are paused is never published: no need to ask the models.
        paused = conditions.level >= LockdownLevel.UPLOADS_PAUSED
        if self.classifiers.configured and not matches.blocks and not paused:
            classification = self.classifiers.classify(frames)
            facts = dataclasses.replace(facts, classification=classification)
        decision = decide(facts, uploader, self.settings.policy, now, self.settings.lockdown)
        return Evaluation(image, signals, matches, decision, classification)


class ScreeningService:
    """Screens an upload and records it: the one path every API screening takes.

    Fails closed: anything but a refusal of the upload itself becomes
    :class:`ScreeningUnavailable` (HTTP 503), which tells the site to hold the image.
    """

    def __init__(
        self,
        screener: Screener,
        database: Database,
        images: ImageStore,
        metrics: Metrics,
        vault: Vault,
        clock: Clock | None = None,
    ) -> None:
        self.screener = screener
        self.database = database
        self.images = images
        self.vault = vault
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.settings = screener.settings

    def screen(
        self,
        site: SiteRef,
        data: bytes,
        uploader: UploaderContext,
        *,
        idempotency_key: str | None,
        actor: str,
    ) -> ScreeningOutcome:
        started = time.perf_counter()
        try:
            outcome = self._screen(site, data, uploader, idempotency_key, actor)
        except IntakeError as error:
            self.metrics.refused.labels(error.code).inc()
            raise
        except ScreeningUnavailable:
            self.metrics.unavailable.inc()
            raise
        except VigilError:
            raise
        except Exception as error:
            log.exception("screening failed; answering 503 so the site holds the image")
            self.metrics.unavailable.inc()
            raise ScreeningUnavailable(
                "Vigil could not screen this image (internal error); hold it and retry"
            ) from error
        if not outcome.replayed:
            self.metrics.record_classification(outcome.classification)
            self.metrics.submissions.labels(outcome.submission.decision).inc()
            self.metrics.screening_seconds.observe(time.perf_counter() - started)
        return outcome

    def _screen(
        self,
        site: SiteRef,
        data: bytes,
        uploader: UploaderContext,
        idempotency_key: str | None,
        actor: str,
    ) -> ScreeningOutcome:
        # Only an Idempotency-Key needs this digest before screening (which computes it again).
        digest = hashlib.sha256(data).hexdigest() if idempotency_key else ""
        if idempotency_key:
            earlier = self._earlier_submission(site, idempotency_key, digest)
            if earlier is not None:
                return ScreeningOutcome(earlier, replayed=True)
        now = self.clock.now()
        suspended, conditions = self._site_state(site, uploader, now)
        evaluation = self.screener.evaluate(
            data, uploader, now, uploader_suspended=suspended, conditions=conditions
        )
        submission_id = str(uuid.uuid4())
        near_accounts = self._near_duplicate_accounts(site, uploader, evaluation, now)
        # Files are written first: no row ever points to an image that is not on disk. A known
        # illegal image goes only to the evidence vault, encrypted; never to the review images.
        image_path = None
        evidence = None
        if evaluation.matches.blocks:
            evidence = self._seal_evidence(data)
        elif _keeps_image(evaluation.decision):
            image_path = self.images.save(submission_id, data)
        try:
            with self.database.session() as session:
                submission = record_screening(
                    session,
                    submission_id=submission_id,
                    site_id=site.id,
                    site_name=site.name,
                    idempotency_key=idempotency_key,
                    uploader=uploader,
                    image=evaluation.image,
                    signals=evaluation.signals,
                    decision=evaluation.decision,
                    classification=evaluation.classification,
                    image_path=image_path,
                    actor=actor,
                    now=now,
                    known_illegal=evaluation.matches.blocks,
                )
                newly_suspended = self._record_consequences(
                    session, site, uploader, evaluation, submission_id, near_accounts, now
                )
                if evidence is not None:
                    # Last: the custody entry locks the chain's head until the commit, so known
                    # images screened at once queue for as short a time as possible.
                    self.vault.record(
                        session,
                        evidence,
                        submission=submission,
                        cause=EvidenceCause.BANK_MATCH,
                        matches=match_records(evaluation.matches.matches),
                        actor=incidents.SYSTEM_ACTOR,
                        now=now,
                    )
        except IntegrityError as error:
            self._discard(image_path, evidence)
            # Two requests with one Idempotency-Key raced; the other one recorded first.
            if idempotency_key:
                earlier = self._earlier_submission(site, idempotency_key, digest)
                if earlier is not None:
                    return ScreeningOutcome(earlier, replayed=True)
            # Not the exception itself: its text carries the row's values (IP, account details).
            log.error("the screening could not be recorded: %s", type(error.orig).__name__)
            raise ScreeningUnavailable("the screening could not be recorded") from error
        except SQLAlchemyError as error:
            self._discard(image_path, evidence)
            raise ScreeningUnavailable(
                "the database cannot record screenings right now; hold the image and retry"
            ) from error
        return ScreeningOutcome(
            submission,
            replayed=False,
            classification=evaluation.classification,
            conditions=conditions,
            uploader_suspended=suspended or newly_suspended,
        )

    def _site_state(
        self, site: SiteRef, uploader: UploaderContext, now: datetime
    ) -> tuple[bool, SiteConditions]:
        """Whether the uploader is suspended, and the site's lockdown level and schedules."""
        try:
            with self.database.session() as session:
                suspended = bool(uploader.uploader_id) and (
                    find_suspension(session, site.id, uploader.uploader_id or "") is not None
                )
                return suspended, lockdown.conditions_for(session, self.settings, site.id, now)
        except SQLAlchemyError as error:
            raise ScreeningUnavailable(
                "the database cannot be read right now; hold the image and retry"
            ) from error

    def _signal_pdq(self, evaluation: Evaluation) -> str | None:
        """The hash attack detection compares: the first frame's good enough to search."""
        floor = self.settings.matching.pdq_quality_floor
        return next(
            (frame.value for frame in evaluation.signals.frame_hashes if frame.quality >= floor),
            None,
        )

    def _near_duplicate_accounts(
        self, site: SiteRef, uploader: UploaderContext, evaluation: Evaluation, now: datetime
    ) -> int:
        try:
            with self.database.session() as session:
                return site_signals.near_duplicate_accounts(
                    session,
                    self.settings.lockdown,
                    site_id=site.id,
                    uploader_id=uploader.uploader_id,
                    pdq=self._signal_pdq(evaluation),
                    now=now,
                )
        except SQLAlchemyError as error:
            raise ScreeningUnavailable(
                "the database cannot be read right now; hold the image and retry"
            ) from error

    def _record_consequences(
        self,
        session: Session,
        site: SiteRef,
        uploader: UploaderContext,
        evaluation: Evaluation,
        submission_id: str,
        near_accounts: int,
        now: datetime,
    ) -> bool:
        """The attack signals this upload shows; for a known illegal image, the uploader's
        suspension and a page to on-call staff. Returns whether the uploader was suspended now."""
        settings = self.settings
        pdq = self._signal_pdq(evaluation)
        site_signals.record_upload(
            session,
            site_id=site.id,
            submission_id=submission_id,
            uploader_id=uploader.uploader_id,
            pdq=pdq,
            decision=evaluation.decision,
            low_trust=is_low_trust(uploader, settings.policy, settings.lockdown, now),
            accounts=near_accounts,
            now=now,
        )
        if not evaluation.matches.blocks:
            return False
        site_row = session.get(Site, site.id)
        assert site_row is not None
        banks = sorted({match.bank for match in evaluation.matches.matches})
        suspended = False
        if uploader.uploader_id:
            suspended = suspend_uploader(
                session,
                site_row,
                uploader.uploader_id,
                reason=f"uploaded an image matching block bank(s) {', '.join(banks)}",
                actor=incidents.SYSTEM_ACTOR,
                now=now,
            )
        incidents.raise_incident(
            session,
            settings.paging,
            site_row,
            IncidentKind.KNOWN_ILLEGAL,
            f"{site.name}: known illegal image uploaded (matched {', '.join(banks)})",
            {
                "submission_id": submission_id,
                "uploader_id": uploader.uploader_id,
                "banks": banks,
                "uploader_suspended": suspended,
            },
            now,
        )
        return suspended

    def _earlier_submission(self, site: SiteRef, key: str, digest: str) -> Submission | None:
        with self.database.session() as session:
            earlier = find_by_idempotency_key(session, site.id, key)
        if earlier is not None and earlier.sha256 != digest:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used for a different image; "
                "use a new key for each upload"
            )
        return earlier

    def _seal_evidence(self, data: bytes) -> SealedFile:
        try:
            return self.vault.seal(data)
        except EvidenceKeyError as error:
            # Never publish, never lose: the site holds the image and retries.
            raise ScreeningUnavailable(
                f"the evidence vault cannot seal a known illegal image: {error}"
            ) from error

    def _discard(self, image_path: str | None, evidence: SealedFile | None = None) -> None:
        if image_path:
            self.images.delete(image_path)
        if evidence is not None:
            self.vault.discard(evidence)


def _keeps_image(decision: Decision) -> bool:
    """Vigil keeps an image a moderator will review or that is evidence; not one it allowed,
    nor one refused only because uploads were paused."""
    if decision.verdict is Verdict.ALLOW:
        return False
    return decision.review or any(
        reason.verdict is Verdict.BLOCK and reason.code != UPLOADS_PAUSED
        for reason in decision.reasons
    )
