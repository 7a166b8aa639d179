"""The screening path, stage by stage, against decoding the same JPEG alone.

Every stage is called the way the service calls it, on a real Runtime (SQLite, banks of random
hashes). For each image size all rows are timed in one round-robin loop, so the ratios to the
decode baseline compare measurements taken side by side.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi.testclient import TestClient
from PIL import Image

from bench.fixtures import ACTOR, JPEG_QUALITY, BankSetup, ImageSize, photo_jpeg
from bench.timing import Timing, measure_round_robin, milliseconds
from vigil.api import create_app
from vigil.intake import open_image
from vigil.policy import UploaderContext, Verdict
from vigil.runtime import BOOTSTRAP_SITE, Runtime, ensure_bootstrap_key
from vigil.signals import FileDigester, PdqHasher, compute_signals
from vigil.store import sites
from vigil.store.sites import SiteRef


@dataclass(frozen=True)
class Row:
    key: str
    label: str


DECODE = Row("decode", "Decode alone, full size, to RGB (**baseline**)")
INTAKE = Row("intake", "Intake: `open_image` + decode frames (draft, resize to working size)")
DIGESTS = Row("digests", "SHA-256 + MD5 + SHA-1 of the file")
PDQ = Row("pdq", "PDQ of the decoded frame")
SIGNALS = Row("signals", "Hashes: `compute_signals` (frame decode + digests + PDQ)")
INDEX_SEARCH = Row("index_search", "PDQ index search (`matcher.index.search`)")
MATCH = Row("match", "Matching: `matcher.match` (generation check, SQL lookup, index search)")
HASH_PATH = Row(
    "hash_path",
    "**Decode (intake, with draft) + hashes + match**: `open_image`, `compute_signals` with the "
    "screener's hashers, `matcher.match`; no classifiers",
)
EVALUATE = Row("evaluate", "**Screen, recording nothing: `screener.evaluate`**")
SCREEN = Row("screen", "Screen and record: `screening.screen` (SQLite write)")
HTTP = Row("http", "HTTP: `POST /v1/screen` through `TestClient`")

ROWS = (
    DECODE,
    INTAKE,
    DIGESTS,
    PDQ,
    SIGNALS,
    INDEX_SEARCH,
    MATCH,
    HASH_PATH,
    EVALUATE,
    SCREEN,
    HTTP,
)


@dataclass(frozen=True)
class SizeResult:
    size: ImageSize
    jpeg_bytes: int
    draft_size: tuple[int, int]  # what the JPEG decoder produced (draft mode), before resizing
    frame_size: tuple[int, int]  # what intake decoded, and PDQ hashed
    timings: dict[str, Timing]

    @property
    def baseline(self) -> Timing:
        return self.timings[DECODE.key]


@dataclass(frozen=True)
class ScreeningRun:
    """Every size, timed on one runtime whose banks cost ``banks`` to fill."""

    repeat: int
    warmup: int
    banks: BankSetup
    results: Sequence[SizeResult]


@dataclass(frozen=True)
class Service:
    """The service as a site reaches it: the app, an API key, and the key's site."""

    runtime: Runtime
    client: TestClient
    site: SiteRef
    headers: dict[str, str]


@contextmanager
def running_service(runtime: Runtime) -> Iterator[Service]:
    """The HTTP app started as ``vigil serve`` starts it (index loaded, embedded worker)."""
    key = ensure_bootstrap_key(runtime.database)
    if key is None:
        raise RuntimeError("the benchmark's fresh database already had an API key")
    with runtime.database.session() as session:
        site = sites.get_site(session, BOOTSTRAP_SITE)
        site_ref = SiteRef(site.id, site.name)
    with TestClient(create_app(runtime)) as client:
        yield Service(runtime, client, site_ref, {"Authorization": f"Bearer {key}"})


def measure_size(
    service: Service, size: ImageSize, *, seed: int, repeat: int, warmup: int
) -> SizeResult:
    """Time every row on one generated photo of ``size``."""
    runtime, client = service.runtime, service.client
    data = photo_jpeg(size, seed)
    limits = runtime.settings.intake
    screener = runtime.screener
    decoded = open_image(data, limits)
    frame = next(decoded.frames())
    signals = compute_signals(decoded, screener.bytes_hashers, screener.frame_hashers)
    _check_screenable(runtime, data)
    query = signals.frame_hashes[0].value
    digester, hasher = FileDigester(), PdqHasher()

    def decode() -> object:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            return picture.convert("RGB")

    def intake() -> object:
        return [each.image for each in open_image(data, limits).frames()]

    def hash_path() -> object:
        opened = open_image(data, limits)
        return runtime.matcher.match(
            compute_signals(opened, screener.bytes_hashers, screener.frame_hashers)
        )

    def screen() -> object:
        return runtime.screening.screen(
            service.site, data, UploaderContext(), idempotency_key=None, actor=ACTOR
        )

    def post() -> object:
        response = client.post(
            "/v1/screen",
            files={"image": ("upload.jpg", data, "image/jpeg")},
            headers=service.headers,
        )
        if response.status_code != 200 or response.json()["decision"] != Verdict.ALLOW:
            raise RuntimeError(f"POST /v1/screen answered {response.status_code}: {response.text}")
        return response

    cases: dict[str, Callable[[], object]] = {
        DECODE.key: decode,
        INTAKE.key: intake,
        DIGESTS.key: lambda: digester.hash_bytes(data),
        PDQ.key: lambda: hasher.hash_frame(frame),
        SIGNALS.key: lambda: compute_signals(
            decoded, screener.bytes_hashers, screener.frame_hashers
        ),
        INDEX_SEARCH.key: lambda: runtime.matcher.index.search(query),
        MATCH.key: lambda: runtime.matcher.match(signals),
        HASH_PATH.key: hash_path,
        EVALUATE.key: lambda: screener.evaluate(data, UploaderContext()),
        SCREEN.key: screen,
        HTTP.key: post,
    }
    timings = measure_round_robin(cases, repeat=repeat, warmup=warmup)
    draft = _draft_size(data, limits.working_size)
    return SizeResult(size, len(data), draft, frame.image.size, timings)


def _draft_size(data: bytes, working_size: int) -> tuple[int, int]:
    """The size the JPEG decoder hands intake: ``intake.decode`` asks Pillow for a draft no
    smaller than the working size, which libjpeg decodes at 1/2, 1/4 or 1/8 scale."""
    with Image.open(io.BytesIO(data)) as picture:
        picture.draft("RGB", (working_size, working_size))
        return picture.size


def _check_screenable(runtime: Runtime, data: bytes) -> None:
    """Make sure the rows measure the whole path: a PDQ hash good enough to be searched (a
    featureless image skips the search) and an image that is allowed, so nothing is held."""
    evaluation = runtime.screener.evaluate(data, UploaderContext())
    (frame_hash,) = evaluation.signals.frame_hashes
    floor = runtime.settings.matching.pdq_quality_floor
    if frame_hash.quality < floor:
        raise RuntimeError(f"PDQ quality {frame_hash.quality} is below {floor}: no search")
    if evaluation.decision.verdict is not Verdict.ALLOW or evaluation.matches.matches:
        raise RuntimeError(f"the benchmark photo was not allowed: {evaluation.decision}")


# --- the section ----------------------------------------------------------------------------


def render_screening(run: ScreeningRun) -> list[str]:
    """The method and the headline table; the per-size tables come from
    :func:`render_breakdowns`, at the end of RESULTS.md."""
    banks = run.banks
    return [
        "## Screening path: method",
        "",
        "- Photo-like images generated in the run (`tests.images.make_photo`: gradients, "
        f"shapes, grain), encoded as JPEG quality {JPEG_QUALITY}; nothing is downloaded.",
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
        "- Intake decodes a JPEG in draft mode: `intake/decode.py` asks Pillow for a draft no "
        "smaller than `intake.working_size` (512 px) on both sides, so libjpeg decodes the DCT "
        "blocks straight to 1/2, 1/4 or 1/8 scale, then the frame is resized to 512 px on its "
        "longer side for PDQ and the models. **Draft** is the size libjpeg produced.",
        "",
        "## Screening path: decode alone against decode + hashes + match",
        "",
        "Decoding the JPEG alone, at full size (what any site does to make a thumbnail), against "
        "Vigil's hashing path, no classifiers: intake (`open_image`, frames decoded with draft), "
        "`compute_signals` with the screener's hashers (SHA-256, MD5, SHA-1 of the file; PDQ of "
        "the frame), `matcher.match` (the bank search); and against the whole screening "
        "(`screener.evaluate`: that path, the default classifiers, the policy). Medians in "
        "milliseconds, from the per-size tables below.",
        "",
        "| Image | JPEG bytes | Draft | Decode alone | Decode + hashes + match | × decode "
        "| `evaluate` | × decode |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
        *(_headline_row(result) for result in run.results),
    ]


def render_breakdowns(run: ScreeningRun) -> list[str]:
    """A table per image size: every row, with its share of ``evaluate``."""
    lines: list[str] = []
    for result in run.results:
        lines += ["", *_breakdown(result)]
    return lines[1:]


def hash_path_ratio(result: SizeResult) -> float:
    """Decode + hashes + match over decoding alone (medians of the same loop)."""
    return result.timings[HASH_PATH.key].median / result.baseline.median


def _headline_row(result: SizeResult) -> str:
    size = result.size
    decode = result.baseline.median
    hashing = result.timings[HASH_PATH.key].median
    evaluate = result.timings[EVALUATE.key].median
    draft_width, draft_height = result.draft_size
    return (
        f"| {size.label} ({size.width}×{size.height}) | {result.jpeg_bytes:,} "
        f"| {draft_width}×{draft_height} (1/{size.width // draft_width}) "
        f"| {milliseconds(decode)} | {milliseconds(hashing)} | {hashing / decode:.2f}× "
        f"| {milliseconds(evaluate)} | {evaluate / decode:.2f}× |"
    )


def _breakdown(result: SizeResult) -> list[str]:
    size = result.size
    width, height = result.frame_size
    draft_width, draft_height = result.draft_size
    decode = result.baseline.median
    evaluate = result.timings[EVALUATE.key].median
    lines = [
        f"## {size.label}: {size.width}×{size.height}, {result.jpeg_bytes:,} bytes "
        f"(intake decodes it at {draft_width}×{draft_height}, then resizes it to "
        f"{width}×{height})",
        "",
        "| Step | median ms | p90 ms | × decode | of evaluate | n |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for row in ROWS:
        timing = result.timings[row.key]
        share = "" if row is DECODE else f"{timing.median / evaluate:.0%}"
        lines.append(
            f"| {row.label} | {milliseconds(timing.median)} | {milliseconds(timing.p90)} "
            f"| {timing.median / decode:.2f}× | {share} | {timing.count} |"
        )
    return lines
