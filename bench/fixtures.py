"""What the benchmarks screen: generated photos, and a real Vigil whose banks are realistically big.

The photos come from ``tests.images.make_photo`` (gradients, shapes and grain: no real pictures,
nothing from the internet), so ``python -m bench`` runs from the repository root, as ``make`` does.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tests.images import encode, make_photo

from vigil.config import load_settings
from vigil.matching.admin import create_bank
from vigil.matching.banks import BankAction
from vigil.matching.importer import import_values
from vigil.runtime import Runtime
from vigil.signals import HashType

ACTOR = "bench"
JPEG_QUALITY = 90
PDQ_BANK = "bench-pdq"
PDQ_BANK_SIZE = 100_000
SHA256_BANK = "bench-sha256"
SHA256_BANK_SIZE = 1_000


@dataclass(frozen=True)
class ImageSize:
    label: str
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


SMALL = ImageSize("0.3 MP", 640, 480)
MEDIUM = ImageSize("2 MP", 1732, 1155)
LARGE = ImageSize("12 MP", 4000, 3000)


def photo_jpeg(size: ImageSize, seed: int) -> bytes:
    """A photo-like JPEG (quality 90), as a phone or a site's uploader would send it."""
    return encode(make_photo(size.width, size.height, seed=seed), "JPEG", quality=JPEG_QUALITY)


@dataclass(frozen=True)
class BankSetup:
    """The banks the screening is matched against, and what filling them cost (once)."""

    pdq_hashes: int
    sha256_hashes: int
    import_seconds: float
    index_build_seconds: float


@contextmanager
def benchmark_runtime(seed: int, **overrides: Any) -> Iterator[tuple[Runtime, BankSetup]]:
    """A Runtime on SQLite in a temporary data folder, its banks filled with random hashes;
    ``overrides`` are settings sections (``lockdown={...}``)."""
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as folder:
        # No background work: the lockdown watch would otherwise raise the site's level while the
        # bench screens hundreds of images from accounts of unknown age, and hold them.
        settings = load_settings(
            data_dir=Path(folder) / "data", workers={"embedded": False}, **overrides
        )
        runtime = Runtime.open(settings)
        try:
            yield runtime, _fill_banks(runtime, np.random.default_rng(seed))
        finally:
            runtime.close()


def fill_banks(runtime: Runtime, seed: int) -> BankSetup:
    """Fill a fresh runtime's banks as :func:`benchmark_runtime` does (for a data folder that a
    separate server process then opens)."""
    return _fill_banks(runtime, np.random.default_rng(seed))


def _fill_banks(runtime: Runtime, rng: np.random.Generator) -> BankSetup:
    banks = (
        (PDQ_BANK, HashType.PDQ, PDQ_BANK_SIZE),
        (SHA256_BANK, HashType.SHA256, SHA256_BANK_SIZE),
    )
    started = time.perf_counter()
    for name, hash_type, count in banks:
        create_bank(
            runtime.database,
            runtime.settings.matching,
            name=name,
            hash_type=hash_type,
            action=BankAction.BLOCK,
            threshold=None,
            enabled=True,
            description="random hashes for the benchmark",
            actor=ACTOR,
        )
        values = _random_hex(rng, count, hash_type.hex_length // 2)
        report = import_values(runtime.database, name, values, actor=ACTOR)
        if report.added != count:
            raise RuntimeError(f"{name}: {report.added} of {count} hashes were added")
    imported = time.perf_counter() - started
    started = time.perf_counter()
    index = runtime.matcher.refresh()
    index_build = time.perf_counter() - started
    if len(index) != PDQ_BANK_SIZE:
        raise RuntimeError(f"the PDQ index holds {len(index)} hashes, not {PDQ_BANK_SIZE}")
    return BankSetup(PDQ_BANK_SIZE, SHA256_BANK_SIZE, imported, index_build)


def _random_hex(rng: np.random.Generator, count: int, byte_length: int) -> list[str]:
    """Random hashes: PDQ entries ~128 bits from any image's hash, like an unrelated list."""
    raw = rng.integers(0, 256, size=(count, byte_length), dtype=np.uint8)
    return [row.tobytes().hex() for row in raw]
