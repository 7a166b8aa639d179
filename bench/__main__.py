"""``python -m bench``: every benchmark section, written to RESULTS.md.

The sections: the screening path at three image sizes, the PDQ matcher against brute force and
`threatexchange`, the robustness of PDQ to transforms, the HTTP API under concurrent clients, the
classifiers, the review app, attack detection and the evidence vault. ``--only`` runs some of them
and writes RESULTS-partial.md instead, so a partial run never replaces the full results.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.fixtures import LARGE, MEDIUM, SMALL, benchmark_runtime
from bench.report import Run, ScreeningRun, render

RESULTS = Path(__file__).with_name("RESULTS.md")
PARTIAL_RESULTS = Path(__file__).with_name("RESULTS-partial.md")
REPEAT = 50
WARMUP = 5
CLASSIFIER_REPEAT = 200  # enough samples for a 99th percentile
RELATED_REPEAT = 10  # each round reads 100,000 submissions
LOCKDOWN_REPEAT = 30  # each round reads up to 100,000 signals
EVIDENCE_REPEAT = 20  # each round writes a 12 MP photo to the vault twice (fsync)
VERIFY_REPEAT = 5  # each round verifies 1,000 items twice
MATCHER_SIZES = (100_000, 1_000_000, 10_000_000)
SEED = 20240601
# In the order they run. The first three share one runtime (and its banks).
SECTIONS = (
    "screening",
    "classifiers",
    "review",
    "lockdown",
    "evidence",
    "matcher",
    "robustness",
    "load",
)
SHARED_RUNTIME = frozenset({"screening", "classifiers", "review"})


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    options = _parser().parse_args(arguments)
    chosen = options.only or set(SECTIONS)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    failed: list[str] = []

    def attempt(section: str, measure: Callable[[], object]) -> None:
        if section not in chosen:
            return
        print(f"{section}: measuring ...", file=sys.stderr, flush=True)
        try:
            results[section] = measure()
        except Exception:
            # The other sections still run and are written (as a partial run): an hour of
            # measurements is not thrown away because one section broke.
            traceback.print_exc()
            print(f"{section}: FAILED, left out of the results", file=sys.stderr, flush=True)
            failed.append(section)

    if chosen & SHARED_RUNTIME:
        try:
            _shared_runtime_sections(chosen, attempt)
        except Exception:  # the shared runtime itself could not be set up or closed
            traceback.print_exc()
            shared = chosen & SHARED_RUNTIME
            failed += [
                name
                for name in SECTIONS
                if name in shared and name not in results and name not in failed
            ]
    attempt("lockdown", _lockdown)
    attempt("evidence", _evidence)
    attempt("matcher", lambda: _matcher(options.sizes))
    attempt("robustness", lambda: _robustness(options.images))
    attempt("load", _load)

    partial = chosen != set(SECTIONS) or bool(failed)
    target = PARTIAL_RESULTS if partial else RESULTS
    run = Run(
        started=started_at,
        seconds=time.perf_counter() - started,
        command=_command(arguments),
        sections=tuple(section for section in SECTIONS if section in results),
        failed=tuple(failed),
        partial=partial,
        screening=results.get("screening"),
        classifiers=results.get("classifiers"),
        review=results.get("review"),
        lockdown=results.get("lockdown"),
        evidence=results.get("evidence"),
        matcher=results.get("matcher"),
        robustness=results.get("robustness"),
        load=results.get("load"),
    )
    target.write_text(render(run))
    print(f"wrote {target}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run Vigil's benchmarks and write bench/RESULTS.md "
        "(bench/RESULTS-partial.md with --only).",
    )
    parser.add_argument(
        "--only",
        type=_sections,
        metavar="SECTION[,SECTION]",
        help=f"run only these sections, of: {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--images",
        type=_folder,
        metavar="DIR",
        help="a folder of your own images, added to the robustness benchmark's",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=MATCHER_SIZES,
        metavar="N,N,...",
        help="bank sizes the matcher benchmark builds "
        f"(default {','.join(str(size) for size in MATCHER_SIZES)})",
    )
    return parser


def _sections(text: str) -> set[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(SECTIONS))
    if unknown or not names:
        problem = f"unknown section {', '.join(unknown)}" if unknown else "no section named"
        raise argparse.ArgumentTypeError(f"{problem}; choose from {', '.join(SECTIONS)}")
    return names


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(size) for size in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive: {text!r}")
    return sizes


def _folder(text: str) -> Path:
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"not a folder: {text}")
    return folder


def _command(arguments: Sequence[str]) -> str:
    """How to produce the file again (``make bench`` passes its options in ``BENCH_ARGS``)."""
    if not arguments:
        return "make bench"
    return f"make bench BENCH_ARGS={shlex.quote(shlex.join(arguments))}"


def _shared_runtime_sections(
    chosen: set[str], attempt: Callable[[str, Callable[[], object]], None]
) -> None:
    from bench.classifiers import measure_classifiers
    from bench.review import measure_review
    from bench.screening import HASH_PATH, measure_size, running_service

    with ExitStack() as stack:
        runtime, banks = stack.enter_context(benchmark_runtime(SEED))
        # The HTTP app stays up while the other two run, as it would in a server.
        service = stack.enter_context(running_service(runtime)) if "screening" in chosen else None

        def screening() -> ScreeningRun:
            assert service is not None
            results = []
            for number, size in enumerate((SMALL, MEDIUM, LARGE)):
                print(f"{size.label}: timing {REPEAT} rounds ...", file=sys.stderr, flush=True)
                result = measure_size(
                    service, size, seed=SEED + number, repeat=REPEAT, warmup=WARMUP
                )
                ratio = result.timings[HASH_PATH.key].median / result.baseline.median
                print(f"{size.label}: hashes + match = {ratio:.2f}x decode", file=sys.stderr)
                results.append(result)
            return ScreeningRun(REPEAT, WARMUP, banks, tuple(results))

        attempt("screening", screening)
        attempt(
            "classifiers",
            lambda: measure_classifiers(runtime, repeat=CLASSIFIER_REPEAT, warmup=WARMUP),
        )
        attempt(
            "review",
            lambda: measure_review(
                runtime, repeat=REPEAT, related_repeat=RELATED_REPEAT, warmup=WARMUP, seed=SEED
            ),
        )


def _lockdown() -> object:
    from bench.lockdown import FULL_WINDOW, measure_lockdown

    # A runtime of its own: a service's embedded worker ticks the lockdown monitor on the system
    # clock, which would raise the busy site's level in the middle of the timing.
    with benchmark_runtime(SEED, **FULL_WINDOW) as (runtime, _):
        return measure_lockdown(runtime, repeat=LOCKDOWN_REPEAT, warmup=WARMUP, seed=SEED)


def _evidence() -> object:
    from bench.evidence import measure_evidence

    # A runtime of its own too: its bank blocks the photos it screens, and its vault holds only
    # the items it verifies.
    with benchmark_runtime(SEED) as (runtime, _):
        return measure_evidence(
            runtime, repeat=EVIDENCE_REPEAT, warmup=WARMUP, verify_repeat=VERIFY_REPEAT, seed=SEED
        )


def _matcher(sizes: Sequence[int]) -> object:
    from bench.matcher import measure_matcher

    return measure_matcher(sizes, SEED)


def _robustness(images: Path | None) -> object:
    from bench.robustness import measure_robustness

    return measure_robustness(images, SEED)


def _load() -> object:
    from bench.load import CLIENTS, SECONDS, measure_load

    return measure_load(CLIENTS, SECONDS, SEED)


if __name__ == "__main__":
    sys.exit(main())
