"""Attack detection on a busy site: the near-duplicate check every upload pays, the rule
measures every tick pays, and what recording an upload's signals adds to its screening.

The site's last half hour is written straight into ``site_signals`` (bulk inserts), then every
step is timed against the cheapest query over the same rows, side by side in one round-robin
loop. The clock is a ``ManualClock`` stopped at the data's "now", so every round sees the same
windows. ``python -m bench.lockdown`` runs this section alone and prints it.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Table, delete, func, insert, select

from bench.fixtures import ImageSize, benchmark_runtime, photo_jpeg
from bench.timing import Timing, measure_round_robin
from vigil.clock import ManualClock
from vigil.lockdown import control, signals
from vigil.lockdown.kinds import SignalKind
from vigil.lockdown.monitor import LockdownMonitor
from vigil.policy import UploaderContext, Verdict
from vigil.runtime import Runtime
from vigil.screening import Evaluation, ScreeningService
from vigil.store.models import LockdownState, Site, SiteSignal
from vigil.store.sites import SiteRef, get_or_create_site
from vigil.store.types import utcnow

NEAR_DUPLICATE_CASES = {
    "fetch": "read the window's uploads (uploader, PDQ) from the database (**baseline**)",
    "numpy": "`_other_accounts_posting`: read, unpack and compare (NumPy `bitwise_count`)",
    "python": "read, then compare row by row in plain Python (`int.bit_count`)",
}
RULE_CASES = {
    "count": "one `count(*)` of the site's signals over the longest window (**baseline**)",
    "measure_rules": "`control.measure_rules`: every default rule, one query per signal and window",
    "tick": "`LockdownMonitor.tick()`: the whole watch of the site (rules, level, urgent queue)",
}
SCREENING_CASES = {
    "evaluate": "`screener.evaluate`: decode, hash, match, classify, decide (**baseline**)",
    "record": "`_record_consequences`: the near-duplicate check and the signal rows, flushed",
    "screen": "`screening.screen`: evaluate, then record the submission and its signals",
}

SITE = "bench-lockdown"
UPLOADER = "bench-uploader"  # the account whose new upload is checked and screened
PHOTO = ImageSize("0.5 MP", 866, 577)
WINDOW_MINUTES = 30  # the longest default rule window: every row below is inside it
UPLOADS = 60_000  # 20,000 in the last 10 minutes, the near-duplicate window
UPLOADERS = 5_000
WAVE_ACCOUNTS = 40  # accounts that posted near-copies of the benchmark photo
# Every upload of the busiest window compared, not only the newest 5,000 (the default).
FULL_WINDOW = {"lockdown": {"near_duplicate_max_compared": UPLOADS}}
# What else a busy site under attack shows in half an hour: 100,000 rows with the uploads.
OTHER_SIGNALS = {
    SignalKind.NEW_ACCOUNT_UPLOAD: 30_000,
    SignalKind.CLASSIFIER_HOLD: 6_000,
    SignalKind.REPORT: 2_000,
    SignalKind.CLASSIFIER_BLOCK: 1_500,
    SignalKind.BANK_MATCH: 300,
    SignalKind.NEAR_DUPLICATES: 200,
}
SIGNALS = UPLOADS + sum(OTHER_SIGNALS.values())
REPORT_WEIGHTS = (0.5, 1.0, 2.0, 3.0)
INSERT_BATCH = 10_000


@dataclass(frozen=True)
class LockdownResult:
    signals: int  # rows in the site's longest window
    uploads: int
    uploaders: int
    compared: int  # uploads the near-duplicate check reads (its window, others' only)
    compared_minutes: float  # that window
    wave_accounts: int  # other accounts it found posting the same picture
    near_duplicates: dict[str, Timing]
    rules: int
    sites: int  # sites one tick evaluates
    level: int  # what the tick before timing raised the busy site to
    rule_timings: dict[str, Timing]
    photo: ImageSize
    photo_bytes: int
    screening: dict[str, Timing]


def measure_lockdown(runtime: Runtime, *, repeat: int, warmup: int, seed: int) -> LockdownResult:
    """Fill one site's signals, then time the near-duplicate check, the rules and a screening.

    Call on a runtime no embedded worker is ticking: a tick on the system clock would raise the
    busy site's level while it is measured. The screening is timed before the first tick, while
    the site is at level 0, so the image is screened in full rather than refused.
    """
    rng = np.random.default_rng(seed)
    settings = runtime.settings
    uploader = UploaderContext(
        uploader_id=UPLOADER, account_created_at=utcnow() - timedelta(days=400)
    )
    data = photo_jpeg(PHOTO, seed)
    evaluation = runtime.screener.evaluate(data, uploader)
    pdq = _recorded_pdq(runtime, evaluation)
    now = utcnow()
    clock = ManualClock(now)
    with runtime.database.write_session() as session:
        site_row = get_or_create_site(session, SITE)
        site = SiteRef(site_row.id, site_row.name)
    _fill_signals(runtime, site.id, pdq, now, rng)

    near_duplicates, compared, found = _time_near_duplicates(
        runtime, site.id, pdq, now, repeat=repeat, warmup=warmup
    )
    service = ScreeningService(
        runtime.screener, runtime.database, runtime.images, runtime.metrics, runtime.vault, clock
    )
    screening = _time_screening(
        runtime, service, site, uploader, data, now, repeat=repeat, warmup=warmup
    )
    monitor = LockdownMonitor(runtime.database, settings, clock)
    # The first tick raises the level (the data fires rules); from then on a tick at the same
    # time finds nothing to change, so every timed tick does the same work.
    monitor.tick()
    with runtime.database.session() as session:
        state = session.get(LockdownState, site.id)
        level = state.automatic_level if state is not None else 0
        sites = len(session.scalars(select(Site.id)).all())
    rule_timings = _time_rules(runtime, site.id, monitor, now, repeat=repeat, warmup=warmup)
    return LockdownResult(
        signals=SIGNALS,
        uploads=UPLOADS,
        uploaders=UPLOADERS,
        compared=compared,
        compared_minutes=settings.lockdown.near_duplicate_window_minutes,
        wave_accounts=found,
        near_duplicates=near_duplicates,
        rules=len(settings.lockdown.rules),
        sites=sites,
        level=level,
        rule_timings=rule_timings,
        photo=PHOTO,
        photo_bytes=len(data),
        screening=screening,
    )


def _recorded_pdq(runtime: Runtime, evaluation: Evaluation) -> str:
    """The photo's PDQ hash, checked to be one screening records (quality above the floor) on
    an image it allows, so the rows measure the whole path and write no image file."""
    (frame_hash,) = evaluation.signals.frame_hashes
    floor = runtime.settings.matching.pdq_quality_floor
    if frame_hash.quality < floor:
        raise RuntimeError(f"PDQ quality {frame_hash.quality} is below {floor}: not recorded")
    if evaluation.decision.verdict is not Verdict.ALLOW:
        raise RuntimeError(f"the benchmark photo was not allowed: {evaluation.decision}")
    return frame_hash.value


def _fill_signals(
    runtime: Runtime, site_id: int, pdq: str, now: datetime, rng: np.random.Generator
) -> None:
    """Half an hour of a busy site under attack: uploads evenly spread, each with a random PDQ
    hash, a wave of accounts re-posting near-copies of the benchmark photo among the recent
    ones, and bank matches, model verdicts, reports and new-account uploads on random uploads."""
    step = timedelta(minutes=WINDOW_MINUTES) / UPLOADS
    hashes = rng.integers(0, 256, size=(UPLOADS, 32), dtype=np.uint8)
    uploads: list[dict[str, Any]] = [
        {
            "site_id": site_id,
            "kind": signals.UPLOAD,
            "at": now - step * (index + 0.5),  # index 0 is the newest; none on a window's edge
            "uploader_id": f"user-{index % UPLOADERS}",
            "submission_id": str(uuid.uuid4()),
            "pdq": hashes[index].tobytes().hex(),
            "value": 1.0,
        }
        for index in range(UPLOADS)
    ]
    recent = int(UPLOADS * runtime.settings.lockdown.near_duplicate_window_minutes / WINDOW_MINUTES)
    photo = np.frombuffer(bytes.fromhex(pdq), dtype=np.uint8)
    wave = rng.choice(recent, size=WAVE_ACCOUNTS, replace=False)
    for number, index in enumerate(wave):
        copy = photo.copy()
        for bit in rng.choice(256, size=int(rng.integers(1, 16)), replace=False):
            copy[bit // 8] ^= 1 << (bit % 8)
        uploads[index].update(uploader_id=f"wave-{number}", pdq=copy.tobytes().hex())
    rows = list(uploads)
    for kind, count in OTHER_SIGNALS.items():
        for index in rng.choice(UPLOADS, size=count, replace=False):
            if kind is SignalKind.REPORT:
                value = float(rng.choice(REPORT_WEIGHTS))
            elif kind is SignalKind.NEAR_DUPLICATES:
                value = float(rng.integers(2, 6))
            else:
                value = 1.0
            rows.append({**uploads[index], "kind": kind.value, "pdq": None, "value": value})
    table = SiteSignal.__table__
    assert isinstance(table, Table)
    with runtime.database.write_session() as session:
        for start in range(0, len(rows), INSERT_BATCH):
            session.execute(insert(table), rows[start : start + INSERT_BATCH])


def _time_near_duplicates(
    runtime: Runtime, site_id: int, pdq: str, now: datetime, *, repeat: int, warmup: int
) -> tuple[dict[str, Timing], int, int]:
    settings = runtime.settings.lockdown
    query = signals.recent_uploads(settings, site_id, UPLOADER, now)

    def fetch() -> list[Any]:
        with runtime.database.session() as session:
            return list(session.execute(query).all())

    def compare() -> int:
        with runtime.database.session() as session:
            others = signals.near_duplicate_accounts(
                session, settings, site_id=site_id, uploader_id=UPLOADER, pdq=pdq, now=now
            )
            return others - 1

    wanted = int(pdq, 16)

    def plain_python() -> int:
        close = settings.near_duplicate_distance
        return len(
            {
                uploader
                for uploader, value in fetch()
                if (int(value, 16) ^ wanted).bit_count() <= close
            }
        )

    compared, found = len(fetch()), compare()
    if found != WAVE_ACCOUNTS or plain_python() != WAVE_ACCOUNTS:
        raise RuntimeError(
            f"the near-duplicate check found {found} accounts (plain Python "
            f"{plain_python()}), not the {WAVE_ACCOUNTS} that re-posted the photo"
        )
    timings = measure_round_robin(
        {"fetch": fetch, "numpy": compare, "python": plain_python}, repeat=repeat, warmup=warmup
    )
    return timings, compared, found


def _time_screening(
    runtime: Runtime,
    service: ScreeningService,
    site: SiteRef,
    uploader: UploaderContext,
    data: bytes,
    now: datetime,
    *,
    repeat: int,
    warmup: int,
) -> dict[str, Timing]:
    """Screening the photo on the busy site, and the lockdown recording inside it alone."""
    screener = runtime.screener
    evaluation = screener.evaluate(data, uploader, now)
    submission_id = str(uuid.uuid4())

    def record() -> bool:
        # Flushed (the INSERTs run) and rolled back, so the rows never pile up; the commit
        # itself is the submission's, which a screening pays anyway.
        # The near-duplicate count is read first, in its own transaction, as screening does.
        accounts = service._near_duplicate_accounts(site, uploader, evaluation, now)
        with runtime.database.session() as session:
            savepoint = session.begin_nested()
            suspended = service._record_consequences(
                session, site, uploader, evaluation, submission_id, accounts, now
            )
            session.flush()
            savepoint.rollback()
            return suspended

    def screen() -> object:
        outcome = service.screen(site, data, uploader, idempotency_key=None, actor="bench")
        if outcome.submission.decision != Verdict.ALLOW:
            raise RuntimeError(f"the screening was not allowed: {outcome.submission.reasons}")
        return outcome

    cases: dict[str, Callable[[], object]] = {
        "evaluate": lambda: screener.evaluate(data, uploader, now),
        "record": record,
        "screen": screen,
    }
    timings = measure_round_robin(cases, repeat=repeat, warmup=warmup)
    # Each screen() recorded an upload and a near-duplicate burst: forget them, so the rules
    # are measured over the same rows as the near-duplicate check.
    with runtime.database.write_session() as session:
        session.execute(delete(SiteSignal).where(SiteSignal.uploader_id == UPLOADER))
    return timings


def _time_rules(
    runtime: Runtime,
    site_id: int,
    monitor: LockdownMonitor,
    now: datetime,
    *,
    repeat: int,
    warmup: int,
) -> dict[str, Timing]:
    settings = runtime.settings
    rules = settings.lockdown.rules
    longest = now - timedelta(minutes=settings.lockdown.longest_window_minutes)

    def count() -> int:
        with runtime.database.session() as session:
            counted = session.scalar(
                select(func.count()).where(SiteSignal.site_id == site_id, SiteSignal.at >= longest)
            )
            return int(counted or 0)

    def measure_rules() -> list[float]:
        with runtime.database.session() as session:
            measured = control.measure_rules(session, settings, site_id, now, None)
            return [value for _, value, _ in measured]

    def per_rule() -> list[float]:
        with runtime.database.session() as session:
            return [
                signals.measure(
                    session, site_id, rule.signal, now - timedelta(minutes=rule.window_minutes)
                )
                for rule in rules
            ]

    if count() != SIGNALS:
        raise RuntimeError(f"{count()} signals in the window, not {SIGNALS}")
    if measure_rules() != per_rule():
        raise RuntimeError(f"measure_rules gave {measure_rules()}; measure: {per_rule()}")

    def tick() -> int:
        changed = monitor.tick()
        if changed:
            raise RuntimeError(f"a tick at the same time changed {changed} things again")
        return changed

    cases: dict[str, Callable[[], object]] = {
        "count": count,
        "measure_rules": measure_rules,
        "tick": tick,
    }
    return measure_round_robin(cases, repeat=repeat, warmup=warmup)


def main() -> None:
    """Time this section alone on a fresh benchmark runtime and print it (RESULTS.md is left as
    it is: it is written by ``python -m bench`` only, from one whole run)."""
    # Imported here: bench.report imports this module for its cases and result.
    from bench.__main__ import LOCKDOWN_REPEAT, SEED, WARMUP
    from bench.report import lockdown_section

    with benchmark_runtime(SEED, **FULL_WINDOW) as (runtime, _):
        print("lockdown: filling signals and timing ...", file=sys.stderr, flush=True)
        result = measure_lockdown(runtime, repeat=LOCKDOWN_REPEAT, warmup=WARMUP, seed=SEED)
    print("\n".join(lockdown_section(result)))


if __name__ == "__main__":
    main()
