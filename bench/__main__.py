"""``python -m bench``: time the screening path at three image sizes, the classifiers, the review
app, attack detection and the evidence vault, and write RESULTS.md."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.classifiers import measure_classifiers
from bench.evidence import measure_evidence
from bench.fixtures import LARGE, MEDIUM, SMALL, benchmark_runtime
from bench.lockdown import FULL_WINDOW, measure_lockdown
from bench.report import Run, render
from bench.review import measure_review
from bench.screening import EVALUATE, measure_size, running_service

RESULTS = Path(__file__).with_name("RESULTS.md")
REPEAT = 50
WARMUP = 5
CLASSIFIER_REPEAT = 200  # enough samples for a 99th percentile
RELATED_REPEAT = 10  # each round reads 100,000 submissions
LOCKDOWN_REPEAT = 30  # each round reads up to 100,000 signals
EVIDENCE_REPEAT = 20  # each round writes a 12 MP photo to the vault twice (fsync)
VERIFY_REPEAT = 5  # each round verifies 1,000 items twice
SEED = 20240601


def main() -> None:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    results = []
    with benchmark_runtime(SEED) as (runtime, banks), running_service(runtime) as service:
        for number, size in enumerate((SMALL, MEDIUM, LARGE)):
            print(f"{size.label}: timing {REPEAT} rounds ...", file=sys.stderr, flush=True)
            result = measure_size(service, size, seed=SEED + number, repeat=REPEAT, warmup=WARMUP)
            ratio = result.timings[EVALUATE.key].median / result.baseline.median
            print(f"{size.label}: evaluate = {ratio:.2f}x decode", file=sys.stderr, flush=True)
            results.append(result)
        print(f"classifiers: timing {CLASSIFIER_REPEAT} rounds ...", file=sys.stderr, flush=True)
        classifiers = measure_classifiers(runtime, repeat=CLASSIFIER_REPEAT, warmup=WARMUP)
        print("review app: previews and related uploaders ...", file=sys.stderr, flush=True)
        review = measure_review(
            runtime, repeat=REPEAT, related_repeat=RELATED_REPEAT, warmup=WARMUP, seed=SEED
        )
    # A runtime of its own: the service's embedded worker ticks the lockdown monitor on the
    # system clock, which would raise the busy site's level in the middle of the timing.
    with benchmark_runtime(SEED, **FULL_WINDOW) as (runtime, _):
        print("lockdown: signals of a busy site ...", file=sys.stderr, flush=True)
        lockdown = measure_lockdown(runtime, repeat=LOCKDOWN_REPEAT, warmup=WARMUP, seed=SEED)
    # A runtime of its own too: its bank blocks the photos it screens, and its vault holds only
    # the items it verifies.
    with benchmark_runtime(SEED) as (runtime, _):
        print("evidence: filling a vault and timing ...", file=sys.stderr, flush=True)
        evidence = measure_evidence(
            runtime, repeat=EVIDENCE_REPEAT, warmup=WARMUP, verify_repeat=VERIFY_REPEAT, seed=SEED
        )
    run = Run(
        started_at,
        time.perf_counter() - started,
        REPEAT,
        WARMUP,
        banks,
        results,
        classifiers,
        review,
        lockdown,
        evidence,
    )
    RESULTS.write_text(render(run))
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
