"""RESULTS.md: the machine, the method and the figures of one run, written in one go."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

from PIL import features

from bench.classifiers import MODELS, PATH_DEFAULT, PATH_NONE, PATHS, ClassifierResult
from bench.evidence import (
    PRESERVE_CASES,
    SEAL_CASES,
    VERIFY_CASES,
    EvidenceResult,
    PhotoResult,
)
from bench.fixtures import JPEG_QUALITY, BankSetup
from bench.lockdown import (
    NEAR_DUPLICATE_CASES,
    RULE_CASES,
    SCREENING_CASES,
    WINDOW_MINUTES,
    LockdownResult,
)
from bench.review import PREVIEW_CASES, RELATED_CASES, ReviewResult
from bench.screening import DECODE, EVALUATE, HTTP, ROWS, SizeResult
from bench.timing import Timing

COMMAND = "make bench"


@dataclass(frozen=True)
class Run:
    started: datetime
    seconds: float
    repeat: int
    warmup: int
    banks: BankSetup
    results: Sequence[SizeResult]
    classifiers: ClassifierResult
    review: ReviewResult
    lockdown: LockdownResult
    evidence: EvidenceResult


def machine() -> dict[str, str]:
    """What the figures depend on: CPU, cores, Python and the imaging libraries."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": _cpu_model(),
        "Cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Pillow": metadata.version("pillow"),
        "libjpeg-turbo": features.version("libjpeg_turbo") or "not used",
        "NumPy": metadata.version("numpy"),
        "onnxruntime": metadata.version("onnxruntime"),
        "pdqhash": metadata.version("pdqhash"),
        "SQLAlchemy": metadata.version("sqlalchemy"),
        "FastAPI": metadata.version("fastapi"),
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def render(run: Run) -> str:
    lines = [
        "# Screening benchmark",
        "",
        f"Produced by `{COMMAND}` on {run.started:%Y-%m-%d %H:%M} UTC in {run.seconds:.0f} s. "
        "The next run overwrites this file; see `bench/README.md` for what each row means.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in machine().items()),
        "",
        "## Method",
        "",
        *_method(run),
        "",
        "## Headline: screening against decoding alone",
        "",
        "| Image | JPEG bytes | Decode alone (median) | `evaluate` (median) | × decode "
        "| `POST /v1/screen` (median) | × decode |",
        "|---|--:|--:|--:|--:|--:|--:|",
        *(_headline_row(result) for result in run.results),
    ]
    lines += ["", *_classifiers(run.classifiers)]
    lines += ["", *_review(run.review)]
    lines += ["", *lockdown_section(run.lockdown)]
    lines += ["", *evidence_section(run.evidence)]
    for result in run.results:
        lines += ["", *_breakdown(result)]
    return "\n".join(lines) + "\n"


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


def _method(run: Run) -> list[str]:
    banks = run.banks
    return [
        f"- Photo-like images generated in the run (`tests.images.make_photo`: gradients, shapes, "
        f"grain), encoded as JPEG quality {JPEG_QUALITY}; nothing is downloaded.",
        "- A real `Runtime` on SQLite in a temporary folder, default settings, with a PDQ "
        f"`block` bank of {banks.pdq_hashes:,} random hashes and a SHA-256 `block` bank of "
        f"{banks.sha256_hashes:,} (importing them took {banks.import_seconds:.1f} s, building "
        f"the PDQ index {banks.index_build_seconds:.2f} s; neither is in the table). Every "
        "photo is allowed, so no image file is written.",
        f"- For each image size, every row is timed {run.repeat} times with "
        f"`time.perf_counter` after {run.warmup} untimed warm-up rounds. The rows run "
        "round-robin (each round runs every row once, starting one row later than the round "
        "before), with `gc.collect()` between rounds, so the machine's noise is shared by all "
        "rows of a size.",
        "- Median and 90th percentile per row, in milliseconds. **× decode** is the row's median "
        "divided by the median of decoding the same JPEG alone, measured in the same loop; "
        "**of evaluate** is the row's median as a share of `screener.evaluate`'s (rows overlap, "
        "so the shares do not add up).",
    ]


def _headline_row(result: SizeResult) -> str:
    decode = result.baseline.median
    evaluate = result.timings[EVALUATE.key].median
    http = result.timings[HTTP.key].median
    return (
        f"| {result.size.label} ({result.size.width}×{result.size.height}) "
        f"| {result.jpeg_bytes:,} | {_ms(decode)} | {_ms(evaluate)} | {evaluate / decode:.2f}× "
        f"| {_ms(http)} | {http / decode:.2f}× |"
    )


def _breakdown(result: SizeResult) -> list[str]:
    size = result.size
    width, height = result.frame_size
    decode = result.baseline.median
    evaluate = result.timings[EVALUATE.key].median
    lines = [
        f"## {size.label}: {size.width}×{size.height}, {result.jpeg_bytes:,} bytes "
        f"(intake decodes it to {width}×{height})",
        "",
        "| Step | median ms | p90 ms | × decode | of evaluate | n |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for row in ROWS:
        timing = result.timings[row.key]
        share = "" if row is DECODE else f"{timing.median / evaluate:.0%}"
        lines.append(
            f"| {row.label} | {_ms(timing.median)} | {_ms(timing.p90)} "
            f"| {timing.median / decode:.2f}× | {share} | {timing.count} |"
        )
    return lines


def _ms(seconds: float) -> str:
    milliseconds = seconds * 1000
    return f"{milliseconds:.3f}" if milliseconds < 1 else f"{milliseconds:.2f}"
