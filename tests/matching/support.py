"""What the matching tests share: the brute-force baseline every index must agree with, and
ways to make hashes at a known distance from others."""

from __future__ import annotations

import functools
import io
import random
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pdqhash
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from tests.images import encode
from vigil.config import IntakeSettings
from vigil.intake import open_image
from vigil.matching.banks import BankInfo
from vigil.matching.index import PdqIndex
from vigil.signals import Signals, compute_signals, default_hashers
from vigil.signals.pdq import pdq_hash, vector_to_hex
from vigil.simulate.images import make_picture

PDQ_BITS = 256


def distance(a: str, b: str) -> int:
    """Hamming distance by counting the ones in the XOR's binary digits: plain Python, nothing
    shared with the code under test."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def flip_bits(value: str, count: int, rng: random.Random) -> str:
    """``value`` with exactly ``count`` of its 256 bits flipped."""
    number = int(value, 16)
    for bit in rng.sample(range(PDQ_BITS), count):
        number ^= 1 << bit
    return f"{number:064x}"


def random_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(PDQ_BITS):064x}"


def brute_force_search(
    banks: Sequence[BankInfo], entries: Sequence[tuple[int, str]], query: str
) -> Counter[tuple[str, str, int]]:
    """(bank name, entry, distance) of every entry within its bank's threshold, as a multiset."""
    by_id = {bank.id: bank for bank in banks}
    found: Counter[tuple[str, str, int]] = Counter()
    for bank_id, entry in entries:
        bank = by_id.get(bank_id)
        if bank is None:
            continue
        gap = distance(entry, query)
        if gap <= bank.threshold:
            found[(bank.name, entry, gap)] += 1
    return found


def assert_index_agrees_with_brute_force(
    banks: Sequence[BankInfo], entries: Sequence[tuple[int, str]], queries: Sequence[str]
) -> int:
    """Build an index and check every query against the baseline; returns how many hits were
    compared, so a caller can make sure the check was not vacuous."""
    index = PdqIndex.build(banks, entries, generation=1)
    compared = 0
    for query in queries:
        hits = index.search(query)
        found = Counter((hit.bank.name, hit.entry, hit.distance) for hit in hits)
        assert found == brute_force_search(banks, entries, query), f"query {query}"
        distances = [hit.distance for hit in hits]
        assert distances == sorted(distances), f"query {query}: not nearest first"
        compared += len(hits)
    return compared


def signals_of(data: bytes) -> Signals:
    """What screening computes for an uploaded file."""
    return compute_signals(open_image(data, IntakeSettings()), *default_hashers())


# --- real PDQ hashes at scale, and a fast baseline for them ------------------------------------


def hits_of(index: PdqIndex, query: str) -> Counter[tuple[str, str, int]]:
    """What the index finds for ``query``, in the baseline's form."""
    return Counter((hit.bank.name, hit.entry, hit.distance) for hit in index.search(query))


class BruteForce:
    """The baseline over many entries: every entry compared, byte by byte (NumPy's popcount of
    bytes: nothing shared with the index's 64-bit words and bit tricks)."""

    def __init__(self, entries: Sequence[tuple[int, str]]) -> None:
        self.entries = list(entries)
        self._bank_ids = np.array([bank_id for bank_id, _ in self.entries], dtype=np.int64)
        self._bytes = np.frombuffer(
            bytes.fromhex("".join(value for _, value in self.entries)), dtype=np.uint8
        ).reshape(-1, 32)

    def search(self, banks: Sequence[BankInfo], query: str) -> Counter[tuple[str, str, int]]:
        """(bank name, entry, distance) of every entry within its enabled bank's threshold."""
        limits = {bank.id: bank.threshold for bank in banks if bank.enabled}
        found: Counter[tuple[str, str, int]] = Counter()
        if not self.entries or not limits:
            return found
        query_bytes = np.frombuffer(bytes.fromhex(query), np.uint8)
        gaps = np.bitwise_count(self._bytes ^ query_bytes).sum(axis=1, dtype=np.int64)
        names = {bank.id: bank.name for bank in banks}
        for row in np.flatnonzero(gaps <= max(limits.values())).tolist():
            bank_id = int(self._bank_ids[row])
            if bank_id in limits and gaps[row] <= limits[bank_id]:
                found[(names[bank_id], self.entries[row][1], int(gaps[row]))] += 1
        return found


def assert_agrees(
    index: PdqIndex,
    banks: Sequence[BankInfo],
    entries: Sequence[tuple[int, str]],
    queries: Sequence[str],
) -> int:
    """Every query finds in ``index`` exactly what brute force finds among ``entries`` (the live
    ones), nearest first; returns how many hits were compared."""
    baseline = BruteForce(entries)
    compared = 0
    for query in queries:
        hits = index.search(query)
        found = Counter((hit.bank.name, hit.entry, hit.distance) for hit in hits)
        expected = baseline.search(banks, query)
        assert found == expected, (
            f"query {query}: missed {sorted(expected - found)}, extra {sorted(found - expected)}"
        )
        distances = [hit.distance for hit in hits]
        assert distances == sorted(distances), f"query {query}: not nearest first"
        compared += len(hits)
    return compared


def flip_bits_in_chunks(
    value: str,
    per_chunk: Sequence[int],
    rng: random.Random,
    key_positions: Mapping[int, Sequence[int]] | None = None,
) -> str:
    """``value`` with exactly ``per_chunk[i]`` bits flipped inside multi-index chunk ``i``: the
    near misses that multi-index hashing finds through one chunk only, or not at all.

    ``key_positions[i]`` narrows where in chunk ``i``'s key (0: its highest bit) the flips go:
    into the part that picks the bucket, or the tail below it."""
    from vigil.matching import mih  # the chunk layout is what makes a near miss adversarial

    number = int(value, 16)
    for chunk, count in enumerate(per_chunk):
        start, size = int(mih.CHUNK_STARTS[chunk]), int(mih.CHUNK_BITS[chunk])
        allowed = (key_positions or {}).get(chunk, range(size))
        for position in rng.sample(list(allowed), count):
            bit = int(mih.BIT_ORDER[start + position])
            number ^= 1 << (PDQ_BITS - 1 - bit)  # bit 0 is the first hex digit's highest
    return f"{number:064x}"


def _picture_kinds(seed: int) -> Image.Image:
    """A generated picture of one of several kinds: photo-like, gradients, stripes, rings,
    blocks; the plainer kinds give the skewed hashes real lists are full of."""
    rng = np.random.default_rng(seed)
    kind = seed % 5
    width, height = int(rng.integers(128, 320)), int(rng.integers(128, 320))
    if kind <= 1:
        return make_picture(width, height, seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 2:
        angle = rng.uniform(0, np.pi)
        ramp = xs * np.cos(angle) + ys * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        colours = rng.uniform(0, 255, size=(2, 3))
        canvas = colours[0] + ramp[..., None] * (colours[1] - colours[0])
    elif kind == 3:
        period = rng.uniform(6, 60)
        angle = rng.uniform(0, np.pi)
        wave = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) / period * 2 * np.pi)
        canvas = np.repeat((127 + 100 * wave)[..., None], 3, axis=2)
    else:
        cells = int(rng.integers(3, 9))
        blocks = rng.uniform(0, 255, size=(cells, cells, 3))
        canvas = blocks[(ys * cells // height).astype(int), (xs * cells // width).astype(int)]
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rings = np.sin(np.hypot(xs - cx, ys - cy) / rng.uniform(5, 30))
        canvas = canvas * (0.75 + 0.25 * rings[..., None])
    canvas = canvas + rng.normal(0, 3, size=canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")


def _sample_pictures() -> list[Image.Image]:
    """scikit-image's shipped sample pictures (no download), as RGB."""
    from skimage import data  # loaded when used: most tests importing this module need none

    names = (
        "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins",
        "colorwheel", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "moon",
        "page", "retina", "rocket", "text", "cell", "shepp_logan_phantom", "checkerboard",
    )  # fmt: skip
    pictures = []
    for name in names:
        pixels = np.asarray(getattr(data, name)())
        if pixels.dtype != np.uint8:
            pixels = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
        picture = Image.fromarray(pixels)
        picture = picture.convert("RGB")
        picture.thumbnail((320, 320))
        pictures.append(picture)
    return pictures


def _copies(picture: Image.Image, rng: random.Random) -> list[Image.Image]:
    """The picture as it travels: re-encoded, resized, cropped, turned, brightened, blurred."""
    width, height = picture.size
    crop = rng.uniform(0.02, 0.1)
    return [
        Image.open(io.BytesIO(encode(picture, "JPEG", quality=rng.choice((30, 50, 70))))),
        picture.resize((max(width // 2, 32), max(height // 2, 32))),
        picture.crop((int(width * crop), int(height * crop), int(width * (1 - crop)), height)),
        picture.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BILINEAR),
        ImageEnhance.Brightness(picture).enhance(rng.uniform(0.6, 1.4)),
        picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.5))),
        ImageOps.grayscale(picture).convert("RGB"),
        ImageOps.expand(picture, border=max(width // 10, 4), fill=(0, 0, 0)),
    ]


@functools.cache
def real_pdq_hashes(pictures: int = 90) -> tuple[tuple[str, ...], ...]:
    """PDQ hashes of generated pictures of several kinds and of scikit-image's samples: one group
    per picture, the original's hash first, then its copies' in :func:`_copies`' order (JPEG,
    half size, cropped, turned, brightened, blurred, grey, framed), then PDQ's eight dihedral
    hashes. Cached: every test module of a run shares them."""
    rng = random.Random(20_260_701)
    sources = [_picture_kinds(seed) for seed in range(pictures)] + _sample_pictures()
    groups = []
    for picture in sources:
        values = [pdq_hash(picture)[0]]
        values += [pdq_hash(copy)[0] for copy in _copies(picture, rng)]
        vectors, _ = pdqhash.compute_dihedral(np.asarray(picture))
        values += [vector_to_hex(vector) for vector in vectors]
        groups.append(tuple(values))
    return tuple(groups)


def derived_hashes(values: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """``count`` hashes a few bits (1-8) from real ones: as many as a big list holds, with the
    skew of real hashes (the bits PDQ sets alike across pictures stay alike)."""
    return [flip_bits(rng.choice(values), rng.randint(1, 8), rng) for _ in range(count)]
