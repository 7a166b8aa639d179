"""RESULTS.md: the command, the machine, the method and the figures of one run, written in one go.

Each section's results are optional: ``python -m bench --only`` runs some sections (and writes
RESULTS-partial.md). The sections of ``bench.matcher``, ``bench.robustness`` and ``bench.load`` are
imported only when their results are there, so a subset never needs their dependencies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bench.classifiers import MODELS, PATH_DEFAULT, PATH_NONE, PATHS, ClassifierResult
from bench.evidence import (
    PRESERVE_CASES,
    SEAL_CASES,
    VERIFY_CASES,
    EvidenceResult,
    PhotoResult,
)
from bench.fixtures import JPEG_QUALITY
from bench.lockdown import (
    NEAR_DUPLICATE_CASES,
    RULE_CASES,
    SCREENING_CASES,
    WINDOW_MINUTES,
    LockdownResult,
)
from bench.machine import describe_machine
from bench.review import PREVIEW_CASES, RELATED_CASES, ReviewResult
from bench.screening import (
    HASH_PATH,
    ScreeningRun,
    hash_path_ratio,
    render_breakdowns,
    render_screening,
)
from bench.timing import Timing, milliseconds

if TYPE_CHECKING:
    from bench.load import LoadResult
    from bench.matcher import MatcherResult
    from bench.robustness import RobustnessResult

__all__ = ["Run", "ScreeningRun", "evidence_section", "lockdown_section", "render"]

_ms = milliseconds


@dataclass(frozen=True)
class Run:
    started: datetime
    seconds: float
    command: str  # what produced the file, options included
    sections: Sequence[str]  # the sections measured, in the order they ran
    failed: Sequence[str] = ()
    partial: bool = False  # --only, or a section failed: written to RESULTS-partial.md
    screening: ScreeningRun | None = None
    classifiers: ClassifierResult | None = None
    review: ReviewResult | None = None
    lockdown: LockdownResult | None = None
    evidence: EvidenceResult | None = None
    matcher: MatcherResult | None = None
    robustness: RobustnessResult | None = None
    load: LoadResult | None = None


def render(run: Run) -> str:
    lines = [
        "# Vigil benchmarks",
        "",
        f"Produced by `{run.command}` (from the repository root) on "
        f"{run.started:%Y-%m-%d %H:%M} UTC in {run.seconds:.0f} s, on the machine below. "
        + (
            f"A partial run ({', '.join(run.sections) or 'no section'} only): it never "
            "replaces `bench/RESULTS.md`. "
            if run.partial
            else "The next run overwrites this file. "
        )
        + "See `bench/README.md` for what each row means.",
    ]
    if run.failed:
        lines += ["", f"**Failed, and left out:** {', '.join(run.failed)} (see the run's output)."]
    lines += [
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in describe_machine().items()),
    ]
    if run.screening is not None:
        lines += ["", *render_screening(run.screening)]
    if run.matcher is not None:
        from bench.matcher import render_matcher

        lines += ["", render_matcher(run.matcher)]
    if run.robustness is not None:
        from bench.robustness import render_robustness

        lines += ["", render_robustness(run.robustness)]
    if run.load is not None:
        from bench.load import render_load

        lines += ["", render_load(run.load)]
    if run.classifiers is not None:
        lines += ["", *_classifiers(run.classifiers)]
    if run.review is not None:
        lines += ["", *_review(run.review)]
    if run.lockdown is not None:
        lines += ["", *lockdown_section(run.lockdown)]
    if run.evidence is not None:
        lines += ["", *evidence_section(run.evidence)]
    if run.screening is not None:
        lines += ["", *render_breakdowns(run.screening)]
    lines += ["", *_closing_note(run)]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def _closing_note(run: Run) -> list[str]:
    """The headline figures of the run, quoted from the sections above.

    A section module may offer ``headline_<section>(result) -> list[str]``: its bullet lines
    for this note (``bench.load`` does); the screening path's are written here.
    """
    notes = _headline("matcher", run.matcher)
    if run.screening is not None:
        ratios = "; ".join(
            f"{hash_path_ratio(result):.2f}× at {result.size.label} "
            f"({milliseconds(result.timings[HASH_PATH.key].median)} ms against "
            f"{milliseconds(result.baseline.median)} ms)"
            for result in run.screening.results
        )
        notes.append(
            "- **Hashing path against decoding** (decode with draft + hashes + match, no "
            "classifiers, over decoding the same JPEG alone at full size): "
            f"{ratios}."
        )
    notes += _headline("robustness", run.robustness)
    notes += _headline("load", run.load)
    if not notes:
        return []
    return ["## Closing note", "", *notes]


def _headline(section: str, result: object | None) -> list[str]:
    if result is None:
        return []
    module = importlib.import_module(f"bench.{section}")
    headline: Callable[[object], list[str]] | None = getattr(module, f"headline_{section}", None)
    return [] if headline is None else headline(result)


def _classifiers(result: ClassifierResult) -> list[str]:
    width, height = result.frame_size
    hashes_only = result.timings[PATH_NONE].median
    lines = [
        "## Classifiers on a 2 MP JPEG",
        "",
        f"scikit-image's astronaut portrait scaled to 2 MP ({result.jpeg_bytes:,} bytes; intake "
        f"decodes it to {width}×{height}; the face model finds {result.faces} face). Each row "
        f"timed {result.timings[PATH_NONE].count} times, round-robin with the others; "
        f"`classifiers.threads` = {result.threads}. **÷ raw** is Vigil's median over "
        "onnxruntime's median for the same model file, measured in the same loop: what Vigil's "
        "preparation of the frame and reading of the output add to the inference itself.",
        "",
        "| Model | Vigil median ms | Vigil p99 ms | raw onnxruntime median ms | raw p99 ms "
        "| ÷ raw |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for row in MODELS:
        vigil = result.timings[f"vigil_{row.model}"]
        raw = result.timings[f"raw_{row.model}"]
        lines.append(
            f"| {row.model} | {_ms(vigil.median)} | {_ms(vigil.p99)} | {_ms(raw.median)} "
            f"| {_ms(raw.p99)} | {vigil.median / raw.median:.2f}× |"
        )
    lines += [
        "",
        "| What Vigil runs | What raw onnxruntime runs |",
        "|---|---|",
        *(f"| {row.model}: {row.vigil_label} | {row.raw_label} |" for row in MODELS),
        "",
        "| Whole screening path | median ms | p99 ms | × classifiers off |",
        "|---|--:|--:|--:|",
    ]
    for key, label in PATHS.items():
        timing = result.timings[key]
        lines.append(
            f"| {label} | {_ms(timing.median)} | {_ms(timing.p99)} "
            f"| {timing.median / hashes_only:.2f}× |"
        )
    default = result.timings[PATH_DEFAULT]
    lines += [
        "",
        f"With the default models, screening a 2 MP JPEG takes {_ms(default.median)} ms "
        f"(median; p99 {_ms(default.p99)} ms), {default.median / hashes_only:.2f}× the path "
        "without classifiers.",
    ]
    return lines


def _review(result: ReviewResult) -> list[str]:
    decode = result.previews["decode"].median
    fetch = result.related["fetch"].median
    return [
        "## Review app",
        "",
        f"Previews of a 2 MP JPEG ({result.preview_bytes:,} bytes), each row timed "
        f"{result.previews['decode'].count} times round-robin; **× decode** against decoding "
        "the same upload to its first frame, in the same loop.",
        "",
        "| Step | median ms | p99 ms | × decode |",
        "|---|--:|--:|--:|",
        *(
            f"| {label} | {_ms(result.previews[key].median)} | {_ms(result.previews[key].p99)} "
            f"| {result.previews[key].median / decode:.2f}× |"
            for key, label in PREVIEW_CASES.items()
        ),
        "",
        f"Related uploaders: one uploader's {result.own} images against "
        f"{result.submissions:,} other submissions of the last 30 days (SQLite, one PDQ hash "
        f"each; {result.related_found} uploaders found), each row timed "
        f"{result.related['fetch'].count} times round-robin; **× fetch** against reading the "
        "same rows alone.",
        "",
        "| Step | median ms | p90 ms | × fetch |",
        "|---|--:|--:|--:|",
        *(
            f"| {label} | {_ms(result.related[key].median)} | {_ms(result.related[key].p90)} "
            f"| {result.related[key].median / fetch:.2f}× |"
            for key, label in RELATED_CASES.items()
        ),
    ]


def lockdown_section(result: LockdownResult) -> list[str]:
    """Attack detection on a busy site: also what ``python -m bench.lockdown`` prints."""
    fetch = result.near_duplicates["fetch"].median
    count = result.rule_timings["count"].median
    evaluate = result.screening["evaluate"].median
    screen = result.screening["screen"].median
    record = result.screening["record"].median
    return [
        "## Lockdown",
        "",
        f"One site's last {WINDOW_MINUTES} minutes of signals in SQLite (bulk-inserted): "
        f"{result.signals:,} rows, {result.uploads:,} of them uploads from "
        f"{result.uploaders:,} accounts, each with a random PDQ hash ({result.compared:,} in "
        f"the last {result.compared_minutes:g} minutes, the near-duplicate window), the rest "
        "new-account uploads, model holds and blocks, reports, bank matches and bursts; "
        f"{result.wave_accounts} of the recent uploads are near-copies of one picture, from as "
        "many accounts. The clock is stopped where the data ends, so every round sees the same "
        f"windows. Each row is timed {result.near_duplicates['fetch'].count} times, round-robin "
        "with the others of its table, after warm-up rounds.",
        "",
        f"Near-duplicate check for one new upload of that picture: {result.compared:,} recent "
        f"uploads by other accounts compared, {result.wave_accounts} accounts found; **× fetch** "
        "against reading the same rows alone, in the same loop.",
        "",
        "| Step | median ms | p90 ms | × fetch |",
        "|---|--:|--:|--:|",
        *(
            _lockdown_row(label, result.near_duplicates[key], fetch)
            for key, label in NEAR_DUPLICATE_CASES.items()
        ),
        "",
        f"The {result.rules} default rules over the same rows; **× count** against one "
        "`count(*)` of the site's signals over the longest window, in the same loop. The tick "
        f"evaluates every site of the database ({result.sites}); one untimed tick before the "
        f"loop raised the busy site to level {result.level}, so each timed tick finds nothing to "
        "change.",
        "",
        "| Step | median ms | p90 ms | × count |",
        "|---|--:|--:|--:|",
        *(
            _lockdown_row(label, result.rule_timings[key], count)
            for key, label in RULE_CASES.items()
        ),
        "",
        f"What the recording costs a screening: a {result.photo.label} JPEG "
        f"({result.photo.width}×{result.photo.height}, {result.photo_bytes:,} bytes) uploaded "
        "to the busy site by an established account, before the tick (level 0: screened in "
        "full); **× evaluate** against screening it without recording anything, in the same "
        "loop.",
        "",
        "| Step | median ms | p90 ms | × evaluate |",
        "|---|--:|--:|--:|",
        *(
            _lockdown_row(label, result.screening[key], evaluate)
            for key, label in SCREENING_CASES.items()
        ),
        "",
        f"Recording the lockdown signals takes {_ms(record)} ms (median): {record / screen:.0%} "
        f"of `screening.screen` on this site, and {record / (screen - evaluate):.0%} of what "
        "it adds to `evaluate`.",
    ]


def evidence_section(result: EvidenceResult) -> list[str]:
    """The evidence vault: also what ``python -m bench.evidence`` prints."""
    first = result.preserve[0].timings["evaluate"]
    verify = result.verify
    read = verify["read"].median
    lines = [
        "## Evidence vault",
        "",
        "On a runtime of its own, with a SHA-256 `block` bank that knows the benchmark photos "
        f"(JPEG quality {JPEG_QUALITY}): screening one seals it into the vault in the request, "
        "as a real match would. The vault's files are written with `fsync` to the temporary "
        "data folder's disk. In each table, a photo's first row is the baseline its other rows "
        "are divided by, measured in the same round-robin loop.",
        "",
        "What preserving costs a known image's screening: the photo screened by a new account "
        "each time (so every screening suspends its uploader and joins the open incident), "
        "against the same photo evaluated without recording anything, and the vault's two "
        f"steps timed alone beside them; one loop per photo, each row timed {first.count} "
        "times.",
        "",
        "| Photo | Step | median ms | p90 ms | × evaluate |",
        "|---|---|--:|--:|--:|",
    ]
    for photo in result.preserve:
        lines += _evidence_rows(photo, PRESERVE_CASES, "evaluate")
    lines.append("")
    for photo in result.preserve:
        timings = photo.timings
        evaluate, screen = timings["evaluate"].median, timings["screen"].median
        vault = timings["seal"].median + timings["record"].median
        # A share of the whole screening, not of the difference of two medians: on a noisy
        # machine that difference can come out smaller than the steps timed alone.
        lines.append(
            f"- {photo.photo.label}: `screening.screen` takes {_ms(screen)} ms, "
            f"{_ms(screen - evaluate)} ms more than `evaluate`; the vault's two steps, timed "
            f"alone, take {_ms(vault)} ms ({vault / screen:.0%} of the screening). Besides them, "
            "it records what every block-bank match does: the submission, the suspension, the "
            "incident and the lockdown signals, in one commit."
        )
    lines += [
        "",
        "Sealing alone, in memory: **× SHA-256** against hashing the same bytes, in the same "
        f"loop (one for both photos), each row timed {result.sealing[0].timings['sha256'].count} "
        "times.",
        "",
        "| Photo | Step | median ms | p90 ms | × SHA-256 |",
        "|---|---|--:|--:|--:|",
    ]
    for photo in result.sealing:
        lines += _evidence_rows(photo, SEAL_CASES, "sha256")
    lines += [
        "",
        f"Verifying a vault of {result.items:,} items, each a {result.item_photo.label} JPEG "
        f"({result.item_bytes:,} bytes) sealed under its own key and recorded as a screening "
        f"records it, with a custody entry each; the files are in the page cache. Each row "
        f"timed {verify['read'].count} times after one warm-up round; **× read** against "
        "reading the sealed files alone, in the same loop.",
        "",
        "| Step | median ms (whole vault) | p90 ms | per item µs | × read |",
        "|---|--:|--:|--:|--:|",
        *(
            f"| {label} | {_ms(verify[key].median)} | {_ms(verify[key].p90)} "
            f"| {verify[key].median / result.items * 1e6:.0f} | {verify[key].median / read:.2f}× |"
            for key, label in VERIFY_CASES.items()
        ),
    ]
    return lines


def _evidence_rows(photo: PhotoResult, cases: dict[str, str], baseline: str) -> list[str]:
    size = photo.photo
    name = f"{size.label} ({size.width}×{size.height}, {photo.jpeg_bytes:,} bytes)"
    base = photo.timings[baseline].median
    return [
        f"| {name} | {label} | {_ms(photo.timings[key].median)} | {_ms(photo.timings[key].p90)} "
        f"| {photo.timings[key].median / base:.2f}× |"
        for key, label in cases.items()
    ]


def _lockdown_row(label: str, timing: Timing, baseline: float) -> str:
    return (
        f"| {label} | {_ms(timing.median)} | {_ms(timing.p90)} | {timing.median / baseline:.2f}× |"
    )
