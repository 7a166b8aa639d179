"""The evidence vault: what preserving a known illegal image adds to its screening, what sealing
costs against hashing the same bytes, and what checking a whole vault costs per item.

A block bank of its own knows the SHA-256 of the benchmark photos, so ``screening.screen`` seals
each one into the vault in the request, as it would a real match. Every step is timed against the
cheapest thing done to the same bytes, side by side in one round-robin loop. ``python -m
bench.evidence`` runs this section alone and prints it.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.fixtures import ACTOR, LARGE, ImageSize, benchmark_runtime, photo_jpeg
from bench.timing import Timing, measure_round_robin
from vigil.actions import incidents
from vigil.actions.submissions import record_screening
from vigil.evidence.capture import read_exif
from vigil.evidence.crypto import open_sealed, seal
from vigil.evidence.vault import EvidenceCause, SealedFile, match_records
from vigil.evidence.verify import verify_vault
from vigil.matching.admin import create_bank
from vigil.matching.banks import BankAction
from vigil.matching.importer import import_values
from vigil.policy import UploaderContext, Verdict
from vigil.runtime import Runtime
from vigil.screening import Evaluation
from vigil.signals import HashType
from vigil.store.models import EvidenceItem, Submission
from vigil.store.sites import SiteRef, get_or_create_site
from vigil.store.types import utcnow

PRESERVE_CASES = {
    "evaluate": "`screener.evaluate`: decode, hash, match, decide; records nothing (**baseline**)",
    "seal": "`vault.seal`: read EXIF, encrypt under a new item key, write the file (fsync)",
    "record": "`vault.record`: the item row and its custody entry (flushed in a savepoint "
    "that is rolled back)",
    "screen": "`screening.screen`: evaluate, seal, record the submission, the item and its "
    "custody entry, suspend the uploader, join the open incident",
}
SEAL_CASES = {
    "sha256": "`hashlib.sha256` of the file (**baseline**)",
    "seal": "`crypto.seal`: new item key, AES-256-GCM, key wrapped by the master key",
    "open": "`crypto.open_sealed`: decrypt and check the tag (item key already unwrapped)",
}
VERIFY_CASES = {
    "read": "read every sealed file (**baseline**)",
    "verify": "`verify_vault`: custody chain, each row against its `stored` entry, each file's "
    "SHA-256, orphans",
    "decrypt": "`verify_vault(decrypt=True)`: the same, and each image decrypted and hashed",
}

SITE = "bench-evidence"
BANK = "bench-evidence-sha256"
SMALL_PHOTO = ImageSize("0.5 MP", 866, 577)
PHOTOS = (SMALL_PHOTO, LARGE)
VAULT_ITEMS = 1_000  # each one the small photo, sealed under its own key
RECORD_BATCH = 500  # items recorded per transaction while filling the vault
# A long-standing account: nothing about the uploader but the bank match blocks the image.
ACCOUNT_AGE = timedelta(days=400)


@dataclass(frozen=True)
class PhotoResult:
    """One photo's rows of a table, keyed as its cases are."""

    photo: ImageSize
    jpeg_bytes: int
    timings: dict[str, Timing]


@dataclass(frozen=True)
class EvidenceResult:
    preserve: tuple[PhotoResult, ...]  # one loop per photo
    sealing: tuple[PhotoResult, ...]  # one loop for both photos
    items: int  # in the vault when it was verified
    item_photo: ImageSize
    item_bytes: int  # the plaintext of each item
    verify: dict[str, Timing]


def measure_evidence(
    runtime: Runtime, *, repeat: int, warmup: int, verify_repeat: int, seed: int
) -> EvidenceResult:
    """Fill a vault and time its verification, then time sealing and a known image's screening.

    The vault is verified first, while it holds only the small items made for it: the screenings
    timed afterwards add items of every size (and their custody entries).
    """
    photos = {photo: photo_jpeg(photo, seed + number) for number, photo in enumerate(PHOTOS)}
    _add_bank(runtime, list(photos.values()))
    with runtime.database.write_session() as session:
        site_row = get_or_create_site(session, SITE)
        site = SiteRef(site_row.id, site_row.name)
    small = photos[SMALL_PHOTO]
    _fill_vault(runtime, site, small, VAULT_ITEMS)
    verify = _time_verify(runtime, repeat=verify_repeat, warmup=1)
    sealing = _time_sealing(runtime, photos, repeat=repeat, warmup=warmup)
    preserve = tuple(
        PhotoResult(
            photo, len(data), _time_preserving(runtime, site, data, repeat=repeat, warmup=warmup)
        )
        for photo, data in photos.items()
    )
    return EvidenceResult(preserve, sealing, VAULT_ITEMS, SMALL_PHOTO, len(small), verify)


def _add_bank(runtime: Runtime, images: list[bytes]) -> None:
    """A SHA-256 ``block`` bank that knows the benchmark photos."""
    create_bank(
        runtime.database,
        runtime.settings.matching,
        name=BANK,
        hash_type=HashType.SHA256,
        action=BankAction.BLOCK,
        threshold=None,
        enabled=True,
        description="the benchmark photos, so that screening them preserves them",
        actor=ACTOR,
    )
    values = [hashlib.sha256(data).hexdigest() for data in images]
    report = import_values(runtime.database, BANK, values, actor=ACTOR)
    if report.added != len(values):
        raise RuntimeError(f"{BANK}: {report.added} of {len(values)} hashes were added")
    runtime.matcher.refresh()


def _uploader(name: str) -> UploaderContext:
    """An upload's context as a site sends it, which the vault keeps with a blocked image."""
    return UploaderContext(
        uploader_id=name,
        account_created_at=utcnow() - ACCOUNT_AGE,
        ip="203.0.113.7",
        port=50_122,
        user_agent="Mozilla/5.0 (bench)",
    )


def _known(runtime: Runtime, data: bytes) -> Evaluation:
    """The photo's evaluation, checked to be a block by the benchmark's bank."""
    evaluation = runtime.screener.evaluate(data, _uploader("bench-check"))
    banks = {match.bank for match in evaluation.matches.matches}
    if not evaluation.matches.blocks or BANK not in banks:
        raise RuntimeError(f"the benchmark photo does not match {BANK}: {banks or 'no bank'}")
    if evaluation.decision.verdict is not Verdict.BLOCK:
        raise RuntimeError(f"the benchmark photo was not blocked: {evaluation.decision}")
    return evaluation


def _record_known(
    session: Session,
    site: SiteRef,
    uploader: UploaderContext,
    evaluation: Evaluation,
    now: datetime,
) -> Submission:
    """The submission row of a known image's screening, as screening records it."""
    return record_screening(
        session,
        submission_id=str(uuid.uuid4()),
        site_id=site.id,
        site_name=site.name,
        idempotency_key=None,
        uploader=uploader,
        image=evaluation.image,
        signals=evaluation.signals,
        decision=evaluation.decision,
        classification=None,
        image_path=None,
        actor=ACTOR,
        now=now,
        known_illegal=True,
    )


def _fill_vault(runtime: Runtime, site: SiteRef, data: bytes, count: int) -> None:
    """``count`` items of one photo, each sealed under its own key and recorded as a screening
    records it (submission, item, custody entry), without screening each one.

    The files are written without ``fsync`` (the fill is not timed, and ``vault.seal`` would
    spend most of it waiting for the disk); verify reads them back from the page cache either
    way, as it would on a vault it checked recently.
    """
    vault = runtime.vault
    evaluation = _known(runtime, data)
    matches = match_records(evaluation.matches.matches)
    exif = read_exif(data)
    uploader = _uploader("bench-filler")
    now = utcnow()
    for start in range(0, count, RECORD_BATCH):
        with runtime.database.write_session() as session:
            for _ in range(min(RECORD_BATCH, count - start)):
                item_id = str(uuid.uuid4())
                sealed = seal(vault.keyring, item_id, data)
                relative = vault.files.relative_path(item_id)
                path = vault.files.root / relative
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                path.write_bytes(sealed.blob)
                submission = _record_known(session, site, uploader, evaluation, now)
                vault.record(
                    session,
                    SealedFile(item_id, relative, sealed, exif),
                    submission=submission,
                    cause=EvidenceCause.BANK_MATCH,
                    matches=matches,
                    actor=incidents.SYSTEM_ACTOR,
                    now=now,
                )
                session.expunge_all()  # keep the identity map small over a batch


def _time_verify(runtime: Runtime, *, repeat: int, warmup: int) -> dict[str, Timing]:
    vault = runtime.vault
    with runtime.database.session() as session:
        paths = list(session.scalars(select(EvidenceItem.file_path).order_by(EvidenceItem.id)))

    def read() -> int:
        return sum(len((vault.files.root / path).read_bytes()) for path in paths if path)

    def verify(*, decrypt: bool) -> int:
        with runtime.database.session() as session:
            report = verify_vault(session, vault, decrypt=decrypt)
        if not report.ok or report.orphans or report.items_checked != len(paths):
            raise RuntimeError(
                f"verify checked {report.items_checked} of {len(paths)} items, found "
                f"{len(report.problems)} problems and {len(report.orphans)} orphans: "
                f"{[str(problem) for problem in report.problems[:3]]}"
            )
        if decrypt and report.decrypted != len(paths):
            raise RuntimeError(f"verify decrypted {report.decrypted} of {len(paths)} items")
        return report.items_checked

    cases: dict[str, Callable[[], object]] = {
        "read": read,
        "verify": lambda: verify(decrypt=False),
        "decrypt": lambda: verify(decrypt=True),
    }
    return measure_round_robin(cases, repeat=repeat, warmup=warmup)


def _time_sealing(
    runtime: Runtime, photos: dict[ImageSize, bytes], *, repeat: int, warmup: int
) -> tuple[PhotoResult, ...]:
    """Sealing and opening each photo in memory, against hashing it; one loop for every photo
    (the rows take microseconds: the collection between rounds is most of a round)."""
    keyring = runtime.vault.keyring
    cases: dict[str, Callable[[], object]] = {}
    for photo, data in photos.items():
        item_id = str(uuid.uuid4())
        sealed = seal(keyring, item_id, data)
        item_key = keyring.unwrap(sealed.key_id, sealed.wrapped_key)
        if open_sealed(item_key, item_id, sealed.blob) != data:
            raise RuntimeError(f"the sealed {photo.label} photo does not open to the same bytes")
        cases[f"{photo.label}/sha256"] = partial(hashlib.sha256, data)
        cases[f"{photo.label}/seal"] = partial(seal, keyring, item_id, data)
        cases[f"{photo.label}/open"] = partial(open_sealed, item_key, item_id, sealed.blob)
    timings = measure_round_robin(cases, repeat=repeat, warmup=warmup)
    return tuple(
        PhotoResult(photo, len(data), {key: timings[f"{photo.label}/{key}"] for key in SEAL_CASES})
        for photo, data in photos.items()
    )


def _time_preserving(
    runtime: Runtime, site: SiteRef, data: bytes, *, repeat: int, warmup: int
) -> dict[str, Timing]:
    """Screening a known photo, the same photo evaluated alone, and the vault's two steps."""
    vault, service = runtime.vault, runtime.screening
    evaluation = _known(runtime, data)
    uploader = _uploader("bench-known")
    matches = match_records(evaluation.matches.matches)
    # One submission with no item yet, for the recording step to preserve again and again.
    with runtime.database.write_session() as session:
        submission_id = _record_known(session, site, uploader, evaluation, utcnow()).id
    recorded_file = vault.seal(data)
    sealed_files: list[SealedFile] = []

    def seal_file() -> SealedFile:
        sealed_file = vault.seal(data)
        sealed_files.append(sealed_file)
        return sealed_file

    def record() -> EvidenceItem:
        with runtime.database.session() as session:
            savepoint = session.begin_nested()
            submission = session.get(Submission, submission_id)
            assert submission is not None
            item = vault.record(
                session,
                recorded_file,
                submission=submission,
                cause=EvidenceCause.BANK_MATCH,
                matches=matches,
                actor=incidents.SYSTEM_ACTOR,
                now=utcnow(),
            )
            savepoint.rollback()
            return item

    # A new account each time: every screening suspends its uploader (the first upload of a
    # known image does), rather than finding it suspended already.
    numbers = itertools.count()

    def screen() -> object:
        fresh = _uploader(f"bench-known-{next(numbers)}")
        outcome = service.screen(site, data, fresh, idempotency_key=None, actor=ACTOR)
        if outcome.submission.decision != Verdict.BLOCK or not outcome.uploader_suspended:
            raise RuntimeError(f"the known photo was not blocked: {outcome.submission.reasons}")
        return outcome

    items_before = _count_items(runtime)
    cases: dict[str, Callable[[], object]] = {
        "evaluate": lambda: runtime.screener.evaluate(data, uploader),
        "seal": seal_file,
        "record": record,
        "screen": screen,
    }
    timings = measure_round_robin(cases, repeat=repeat, warmup=warmup)
    preserved = _count_items(runtime) - items_before
    if preserved != repeat + warmup:
        raise RuntimeError(f"{repeat + warmup} screenings preserved {preserved} items")
    for sealed_file in (*sealed_files, recorded_file):  # sealed, never recorded: not evidence
        vault.discard(sealed_file)
    return timings


def _count_items(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(EvidenceItem)) or 0)


def main() -> None:
    """Time this section alone on a fresh benchmark runtime and print it (RESULTS.md is left as
    it is: it is written by ``python -m bench`` only, from one whole run)."""
    # Imported here: bench.report imports this module for its cases and result.
    from bench.__main__ import EVIDENCE_REPEAT, SEED, VERIFY_REPEAT, WARMUP
    from bench.report import evidence_section

    with benchmark_runtime(SEED) as (runtime, _):
        print("evidence: filling a vault and timing ...", file=sys.stderr, flush=True)
        result = measure_evidence(
            runtime,
            repeat=EVIDENCE_REPEAT,
            warmup=WARMUP,
            verify_repeat=VERIFY_REPEAT,
            seed=SEED,
        )
    print("\n".join(evidence_section(result)))


if __name__ == "__main__":
    main()
