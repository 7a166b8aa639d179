"""The screening path: intake -> signals -> matching -> policy -> actions, for one upload."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from vigil.actions.images import ImageStore
from vigil.actions.submissions import record_screening
from vigil.config import Settings
from vigil.errors import IdempotencyConflict, IntakeError, ScreeningUnavailable, VigilError
from vigil.intake import DecodedImage, open_image
from vigil.matching.matcher import Matcher, MatchReport
from vigil.metrics import Metrics
from vigil.policy import Decision, ScreeningFacts, UploaderContext, Verdict, decide
from vigil.signals import BytesHasher, FrameHasher, Signals, default_hashers, hash_image
from vigil.signals.classifiers import ClassifierReport, ClassifierSuite
from vigil.store.database import Database
from vigil.store.models import Submission
from vigil.store.sites import SiteRef
from vigil.store.submissions import find_by_idempotency_key
from vigil.store.types import utcnow
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
        default_bytes, default_frames = default_hashers()
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
    ) -> Evaluation:
        """Decode, hash, match, classify and decide; records nothing. Raises IntakeError for
        bad input."""
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
        )
        classification = None
        # An image a block bank knows is blocked whatever a model thinks of it: no need to ask.
        if self.classifiers.configured and not matches.blocks:
            classification = self.classifiers.classify(frames)
            facts = dataclasses.replace(facts, classification=classification)
        decision = decide(facts, uploader, self.settings.policy, now or utcnow())
        return Evaluation(image, signals, matches, decision, classification)


class ScreeningService:
    """Screens an upload and records it: the one path every API screening takes.

    Fails closed: anything but a refusal of the upload itself becomes
    :class:`ScreeningUnavailable` (HTTP 503), which tells the site to hold the image.
    """

    def __init__(
        self, screener: Screener, database: Database, images: ImageStore, metrics: Metrics
    ) -> None:
        self.screener = screener
        self.database = database
        self.images = images
        self.metrics = metrics

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
        now = utcnow()
        evaluation = self.screener.evaluate(
            data, uploader, now, uploader_suspended=self._suspended(site, uploader)
        )
        submission_id = str(uuid.uuid4())
        # The file is written first: no row ever points to an image that is not on disk.
        image_path = None
        if evaluation.decision.verdict is not Verdict.ALLOW:
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
        except IntegrityError as error:
            self._discard(image_path)
            # Two requests with one Idempotency-Key raced; the other one recorded first.
            if idempotency_key:
                earlier = self._earlier_submission(site, idempotency_key, digest)
                if earlier is not None:
                    return ScreeningOutcome(earlier, replayed=True)
            raise ScreeningUnavailable("the screening could not be recorded") from error
        except SQLAlchemyError as error:
            self._discard(image_path)
            raise ScreeningUnavailable(
                "the database cannot record screenings right now; hold the image and retry"
            ) from error
        return ScreeningOutcome(
            submission, replayed=False, classification=evaluation.classification
        )

    def _suspended(self, site: SiteRef, uploader: UploaderContext) -> bool:
        if not uploader.uploader_id:
            return False
        try:
            with self.database.session() as session:
                return find_suspension(session, site.id, uploader.uploader_id) is not None
        except SQLAlchemyError as error:
            raise ScreeningUnavailable(
                "the database cannot be read right now; hold the image and retry"
            ) from error

    def _earlier_submission(self, site: SiteRef, key: str, digest: str) -> Submission | None:
        with self.database.session() as session:
            earlier = find_by_idempotency_key(session, site.id, key)
        if earlier is not None and earlier.sha256 != digest:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used for a different image; "
                "use a new key for each upload"
            )
        return earlier

    def _discard(self, image_path: str | None) -> None:
        if image_path:
            self.images.delete(image_path)
