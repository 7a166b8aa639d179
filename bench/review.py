"""The review app's two costly steps: rendering a preview, and finding the uploaders who posted
near-identical images (every submission of the last month compared with one uploader's)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import Table, Text, cast, insert, select
from tests.images import encode, make_photo

from bench.timing import Timing, measure_round_robin
from vigil.intake import open_image
from vigil.review.previews import PreviewStyle, render_preview
from vigil.review.uploaders import related_uploaders
from vigil.runtime import Runtime
from vigil.store.models import Submission
from vigil.store.sites import get_or_create_site
from vigil.store.types import utcnow

PREVIEW_CASES = {
    "decode": "decode the upload and its first frame (baseline)",
    "blurred": "blurred greyscale preview (what the queue shows)",
    "clear": "clear preview (a reveal)",
}
RELATED_CASES = {
    "fetch": "read the window's submissions from the database, hashes as JSON text (baseline)",
    "related": "related_uploaders: read, unpack and compare (NumPy)",
    "python": "read, then parse and compare row by row in plain Python (int.bit_count)",
}
OTHER_SUBMISSIONS = 100_000
OWN_SUBMISSIONS = 20
UPLOADERS = 5_000


@dataclass(frozen=True)
class ReviewResult:
    preview_bytes: int
    previews: dict[str, Timing]
    submissions: int
    own: int
    related_found: int
    related: dict[str, Timing]


def measure_review(
    runtime: Runtime, *, repeat: int, related_repeat: int, warmup: int, seed: int
) -> ReviewResult:
    upload = encode(make_photo(1732, 1155, seed=seed), "JPEG", quality=90)
    settings = runtime.settings

    def decode() -> object:
        return next(iter(open_image(upload, settings.intake).frames()))

    previews = measure_round_robin(
        {
            "decode": decode,
            "blurred": lambda: render_preview(upload, PreviewStyle.BLURRED, settings),
            "clear": lambda: render_preview(upload, PreviewStyle.CLEAR, settings),
        },
        repeat=repeat,
        warmup=warmup,
    )

    site_id, own = _fill_submissions(runtime, np.random.default_rng(seed))
    now = utcnow()

    def fetch() -> object:
        with runtime.database.session() as session:
            return session.execute(
                select(Submission.uploader_id, Submission.sha256, cast(Submission.pdq, Text)).where(
                    Submission.site_id == site_id,
                    Submission.created_at >= now - timedelta(days=30),
                    Submission.uploader_id != "suspect",
                )
            ).all()

    def related() -> int:
        with runtime.database.session() as session:
            return len(related_uploaders(session, site_id, "suspect", own, settings, now))

    mine = [int(entry["hash"], 16) for submission in own for entry in submission.pdq]

    def plain_python() -> int:
        found = set()
        for uploader, _, pdq in fetch():  # type: ignore[attr-defined]
            value = int(json.loads(pdq)[0]["hash"], 16)
            if min((value ^ other).bit_count() for other in mine) <= 31:
                found.add(uploader)
        return len(found)

    related_found = related()
    timings = measure_round_robin(
        {"fetch": fetch, "related": related, "python": plain_python},
        repeat=related_repeat,
        warmup=1,
    )
    return ReviewResult(len(upload), previews, OTHER_SUBMISSIONS, len(own), related_found, timings)


def _fill_submissions(runtime: Runtime, rng: np.random.Generator) -> tuple[int, list[Submission]]:
    """A month of a busy site: random images from many uploaders, and one suspect whose few
    images a handful of others re-posted with small changes."""
    now = utcnow()
    with runtime.database.write_session() as session:
        site_id = get_or_create_site(session, "bench-review").id
    hashes = rng.integers(0, 2**63, size=(OTHER_SUBMISSIONS + OWN_SUBMISSIONS, 4), dtype=np.int64)
    own_hashes = hashes[OTHER_SUBMISSIONS:]
    # Fifty re-posts of the suspect's images, each with a few bits flipped.
    copies = rng.integers(0, OTHER_SUBMISSIONS, size=50)
    for number, index in enumerate(copies):
        hashes[index] = own_hashes[number % OWN_SUBMISSIONS] ^ (1 << int(rng.integers(0, 60)))
    rows = []
    for index, words in enumerate(hashes):
        own = index >= OTHER_SUBMISSIONS
        value = "".join(f"{int(word):016x}" for word in words)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "site_id": site_id,
                "uploader_id": "suspect" if own else f"user-{index % UPLOADERS}",
                "context": {},
                "sha256": f"{index:064x}",
                "md5": "0" * 32,
                "sha1": "0" * 40,
                "pdq": [{"frame": 0, "hash": value, "quality": 100}],
                "image_format": "jpeg",
                "width": 640,
                "height": 480,
                "frame_count": 1,
                "frames_screened": 1,
                "byte_size": 50_000,
                "initial_decision": "allow",
                "decision": "allow",
                "reasons": [],
                "classifications": [],
                "review_state": "none",
                "priority": 0,
                "flags": [],
                "known_illegal": False,
                "created_at": now - timedelta(minutes=index % 40_000),
            }
        )
    table = Submission.__table__
    assert isinstance(table, Table)
    with runtime.database.write_session() as session:
        for start in range(0, len(rows), 10_000):
            session.execute(insert(table), rows[start : start + 10_000])
    with runtime.database.session() as session:
        own_rows = list(
            session.scalars(select(Submission).where(Submission.uploader_id == "suspect")).all()
        )
    return site_id, own_rows
