"""An uploader's history, and the other uploaders who posted near-identical images: an attack
is often several throwaway accounts posting the same set."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from vigil.config import Settings
from vigil.store.models import Submission

# Submissions compared per request at most (the most recent ones): about a second on SQLite.
MAX_COMPARED = 100_000
# This uploader's hashes compared at most (their most recent), and hash pairs compared at once:
# together they bound the memory one request can take (about 32 MB).
MAX_OWN_HASHES = 5_000
_PAIRS_AT_ONCE = 1_000_000
_HASH = re.compile(r'"hash":\s*"([0-9a-f]{64})"')
_QUALITY = re.compile(r'"quality":\s*(-?\d+)')


@dataclass(frozen=True)
class RelatedUploader:
    uploader_id: str
    shared: int  # how many of their submissions are near-identical to one of this uploader's
    closest: int  # the smallest PDQ distance between the two (0 for the same file)


def _hash_words(hex_hashes: Iterable[str]) -> np.ndarray:
    """256-bit hashes as rows of four 64-bit words, for XOR-and-popcount distances."""
    rows = [bytes.fromhex(value) for value in hex_hashes]
    if not rows:
        return np.zeros((0, 4), dtype=np.uint64)
    return np.frombuffer(b"".join(rows), dtype=">u8").astype(np.uint64).reshape(-1, 4)


def _good_hashes(submission_pdq: Sequence[dict[str, object]], floor: int) -> list[str]:
    return [
        str(entry["hash"])
        for entry in submission_pdq
        if "hash" in entry and int(str(entry.get("quality", 0))) >= floor
    ]


def related_uploaders(
    session: Session,
    site_id: int,
    uploader_id: str,
    own: Sequence[Submission],
    settings: Settings,
    now: datetime,
) -> list[RelatedUploader]:
    """Other uploaders of the same site whose recent images are within
    ``review.related_pdq_distance`` of this uploader's (or are the very same file)."""
    floor = settings.matching.pdq_quality_floor
    recent_first = sorted(own, key=lambda submission: submission.created_at, reverse=True)
    own_hashes = [h for submission in recent_first for h in _good_hashes(submission.pdq, floor)]
    mine = _hash_words(own_hashes[:MAX_OWN_HASHES])
    own_files = {submission.sha256 for submission in own}
    since = now - timedelta(days=settings.review.related_window_days)
    # The hashes come back as JSON text and are read with two regular expressions: several
    # times faster than through the column's JSON type, which matters at 100,000 rows.
    others = session.execute(
        select(Submission.uploader_id, Submission.sha256, cast(Submission.pdq, Text))
        .where(
            Submission.site_id == site_id,
            Submission.created_at >= since,
            Submission.uploader_id.is_not(None),
            Submission.uploader_id != uploader_id,
        )
        .order_by(Submission.created_at.desc())
        .limit(MAX_COMPARED)
    ).all()
    closest_by_row: dict[int, int] = {}  # row of ``others`` -> its smallest distance
    rows: list[int] = []
    hashes: list[str] = []
    for row, (_, sha256, pdq_text) in enumerate(others):
        if sha256 in own_files:
            closest_by_row[row] = 0
            continue
        # Each frame's object has one hash and one quality, so the two lists pair up in order
        # (whatever order the database keeps the keys in); cheaper than parsing the JSON.
        frames = zip(_HASH.findall(pdq_text or ""), _QUALITY.findall(pdq_text or ""), strict=True)
        for value, quality in frames:
            if int(quality) >= floor:
                rows.append(row)
                hashes.append(value)
    if len(mine) and hashes:
        theirs = _hash_words(hashes)
        limit = settings.review.related_pdq_distance
        # Compared in slices so memory stays bounded whatever the counts.
        step = max(1, _PAIRS_AT_ONCE // len(mine))
        for start in range(0, len(theirs), step):
            block = theirs[start : start + step]
            distances = np.bitwise_count(block[:, None, :] ^ mine[None, :, :]).sum(axis=2)
            closest = distances.min(axis=1)
            for offset in np.nonzero(closest <= limit)[0]:
                row = rows[start + int(offset)]
                distance = int(closest[offset])
                closest_by_row[row] = min(distance, closest_by_row.get(row, distance))
    found: dict[str, list[int]] = {}
    for row, distance in closest_by_row.items():
        found.setdefault(str(others[row][0]), []).append(distance)
    related = [
        RelatedUploader(other, len(distances_found), min(distances_found))
        for other, distances_found in found.items()
    ]
    return sorted(related, key=lambda item: (-item.shared, item.closest, item.uploader_id))
