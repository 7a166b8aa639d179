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
from bench.fixtures import JPEG_QUALITY, BankSetup
from bench.review import PREVIEW_CASES, RELATED_CASES, ReviewResult
from bench.screening import DECODE, EVALUATE, HTTP, ROWS, SizeResult

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
