"""``python -m bench``: time the screening path at three image sizes and write RESULTS.md."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.fixtures import LARGE, MEDIUM, SMALL, benchmark_runtime
from bench.report import Run, render
from bench.screening import EVALUATE, measure_size, running_service

RESULTS = Path(__file__).with_name("RESULTS.md")
REPEAT = 50
WARMUP = 5
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
    run = Run(started_at, time.perf_counter() - started, REPEAT, WARMUP, banks, results)
    RESULTS.write_text(render(run))
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
