"""Pictures for replays: synthetic, deterministic, and never anything real.

A scenario's "abusive" sets are stand-ins: ordinary synthetic pictures that the replay treats as
abusive, and whose hashes it puts in a bank when the scenario says the set is known.
"""

from __future__ import annotations

import io
from enum import StrEnum

import numpy as np
from PIL import Image


def make_picture(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """A photo-like picture: smooth gradients, overlapping shapes and a little grain.

    Structure at every scale gives PDQ high quality, and different seeds give unrelated hashes.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    for channel in range(3):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
        canvas[..., channel] = 127 + 80 * np.sin(
            xs / width * fx * 6.3 + ys / height * fy * 6.3 + phase
        )
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
        canvas[inside] = rng.uniform(0, 255, size=3)
    canvas += rng.normal(0, 6, size=canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")


class Variant(StrEnum):
    """How a posted copy differs from the set's original, as attackers vary copies to slip past
    exact hashes."""

    EXACT = "exact"  # the original file
    REENCODE = "reencode"  # JPEG again at another quality
    RESIZE = "resize"  # scaled down a little and re-encoded


def original(seed: int) -> bytes:
    return _jpeg(make_picture(seed=seed), quality=92)


def posted_copy(seed: int, variant: Variant, nonce: int) -> bytes:
    """The file one account posts: ``nonce`` makes each posting's bytes differ."""
    picture = make_picture(seed=seed)
    if variant is Variant.EXACT:
        return _jpeg(picture, quality=92)
    if variant is Variant.RESIZE:
        scale = 0.8 + (nonce % 5) * 0.03
        picture = picture.resize((int(picture.width * scale), int(picture.height * scale)))
    return _jpeg(picture, quality=70 + nonce % 20)


def _jpeg(picture: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
