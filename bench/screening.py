"""The screening path, stage by stage, against decoding the same JPEG alone.

Every stage is called the way the service calls it, on a real Runtime (SQLite, banks of random
hashes). For each image size all rows are timed in one round-robin loop, so the ratios to the
decode baseline compare measurements taken side by side.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi.testclient import TestClient
from PIL import Image

from bench.fixtures import ACTOR, ImageSize, photo_jpeg
from bench.timing import Timing, measure_round_robin
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
EVALUATE = Row("evaluate", "**Screen, recording nothing: `screener.evaluate`**")
SCREEN = Row("screen", "Screen and record: `screening.screen` (SQLite write)")
HTTP = Row("http", "HTTP: `POST /v1/screen` through `TestClient`")

ROWS = (DECODE, INTAKE, DIGESTS, PDQ, SIGNALS, INDEX_SEARCH, MATCH, EVALUATE, SCREEN, HTTP)


@dataclass(frozen=True)
class SizeResult:
    size: ImageSize
    jpeg_bytes: int
    frame_size: tuple[int, int]  # what intake decoded, and PDQ hashed
    timings: dict[str, Timing]

    @property
    def baseline(self) -> Timing:
        return self.timings[DECODE.key]


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
        EVALUATE.key: lambda: screener.evaluate(data, UploaderContext()),
        SCREEN.key: screen,
        HTTP.key: post,
    }
    timings = measure_round_robin(cases, repeat=repeat, warmup=warmup)
    return SizeResult(size, len(data), frame.image.size, timings)


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
