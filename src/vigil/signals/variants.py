"""Hashes of edited copies of a frame, so a known image re-uploaded mirrored, turned or framed
still matches its bank entry.

A bank holds the PDQ hash of the known image as it was found. Plain PDQ tolerates re-encoding,
resizing and colour changes, but not a mirror image or a quarter turn (a different hash), nor a
border (letterboxing, padding, a frame: the picture shrinks inside the hash's square). So screening
also hashes the upload *undone* in each of those ways and searches those hashes too:

- ``dihedral``: the seven mirror images and quarter turns (``flip_h``, ``rotate90``...);
- ``trimmed``: the frame with a uniform border (any colour, JPEG noise tolerated) cut off, when it
  has one, and with ``dihedral`` its mirror images and turns too (``trimmed_flip_h``...);
- ``crop_90``, ``crop_82``...: the centre of the frame, for a border that is not uniform (a
  blurred copy of the picture, a pattern, noise). PDQ forgives a crop of only a percent or two,
  so each centre crop catches borders of a narrow band of widths.

A variant is named after the edit the upload appears to have had (``rotate90``: the known image
turned 90° clockwise), not after the undoing, so a moderator reads what was done to the image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vigil.config import MatchingSettings

# Mirror images and quarter turns are hashed on a copy this many pixels on its longer side, by
# really transposing it. pdqhash.compute_dihedral would give all eight hashes for the price of
# one (in the order: as is, Pillow's ROTATE_90, ROTATE_180, ROTATE_270, FLIP_TOP_BOTTOM,
# FLIP_LEFT_RIGHT, TRANSPOSE, TRANSVERSE; tests/signals/test_variants.py checks it), but its
# downscaling is not symmetric: on JPEG copies of 49 pictures its hashes of a mirrored upload were
# 14 bits from the known image's on average (up to 46; one of the 49 missed), about half the match
# threshold gone before any other edit. Transposing a 128-pixel copy gave 6 bits on average (at
# most 18), and its seven hashes cost about as much as the frame's own (bench/robustness.py).
VARIANT_SIDE = 128

_T = Image.Transpose
# Each edit an upload may have had, and the transposition that undoes it.
DIHEDRAL: dict[str, Image.Transpose] = {
    "flip_h": _T.FLIP_LEFT_RIGHT,  # mirrored left to right
    "flip_v": _T.FLIP_TOP_BOTTOM,  # mirrored top to bottom
    "rotate90": _T.ROTATE_90,  # turned 90° clockwise: turned back anticlockwise (Pillow's 90)
    "rotate180": _T.ROTATE_180,
    "rotate270": _T.ROTATE_270,  # turned 90° anticlockwise
    "transpose": _T.TRANSPOSE,  # mirrored across the main diagonal
    "transverse": _T.TRANSVERSE,  # mirrored across the other diagonal
}
TRIMMED = "trimmed"
TRIMMED_PREFIX = "trimmed_"  # then a DIHEDRAL name: mirrored or turned, and inside a border
CROP_PREFIX = "crop_"

# How an upload looks next to the known image it matched, read after "the known image".
_DESCRIPTIONS = {
    "flip_h": "mirrored left to right",
    "flip_v": "mirrored top to bottom",
    "rotate90": "turned 90° clockwise",
    "rotate180": "turned upside down",
    "rotate270": "turned 90° anticlockwise",
    "transpose": "mirrored across its diagonal",
    "transverse": "mirrored across its other diagonal",
    TRIMMED: "inside a uniform border",
}

# Border detection: a line (row or column) belongs to the border while nearly all its pixels are
# within a tolerance of the brightness of the image's outermost line on that side. The tolerance
# absorbs JPEG noise and ringing on flat colour (quality 30 included); the share lets a few stray
# pixels through.
BORDER_TOLERANCE = 24
BORDER_SHARE = 0.98
# A border thinner than this share of the side (and 2 pixels) is an artefact, not a border.
MIN_BORDER_SHARE = 0.01
# What is left must be big enough for PDQ to say something about.
MIN_TRIMMED_SIDE = 32


def describe_variant(variant: str) -> str:
    """How the upload differs from the known image it matched, to follow "the known image"."""
    if variant.startswith(CROP_PREFIX):
        percent = variant.removeprefix(CROP_PREFIX)
        return f"inside a border (the upload's central {percent} % matched)"
    if variant.startswith(TRIMMED_PREFIX):
        edit = variant.removeprefix(TRIMMED_PREFIX)
        return f"{_DESCRIPTIONS[TRIMMED]}, {_DESCRIPTIONS.get(edit, edit)}"
    return _DESCRIPTIONS.get(variant, variant)


def crop_name(fraction: float) -> str:
    return f"{CROP_PREFIX}{round(fraction * 100)}"


@dataclass(frozen=True)
class VariantOptions:
    """Which edited copies to hash, and for how many frames of an animation."""

    dihedral: bool = False
    trim_borders: bool = False
    centre_crops: tuple[float, ...] = ()
    # Frames (by index) whose edited copies are hashed. All of them cost about 7 ms a frame (11 to
    # 19 more hashes, bench/robustness.py), two seconds for an animation at intake's 300 frames;
    # the first frame is the one a still picture re-posted as an animation, and every preview,
    # shows.
    frames: int = 1

    @classmethod
    def from_settings(cls, matching: MatchingSettings) -> VariantOptions:
        return cls(
            dihedral=matching.dihedral,
            trim_borders=matching.trim_borders,
            centre_crops=tuple(matching.centre_crops),
            frames=matching.variant_frames,
        )

    def names(self) -> frozenset[str]:
        """Every variant these options can give (trimmed ones only for a frame with a border)."""
        names = set(DIHEDRAL) if self.dihedral else set()
        if self.trim_borders:
            names.add(TRIMMED)
            if self.dihedral:
                names.update(TRIMMED_PREFIX + name for name in DIHEDRAL)
        names.update(crop_name(fraction) for fraction in self.centre_crops)
        return frozenset(names)

    @property
    def enabled(self) -> bool:
        return self.frames > 0 and (self.dihedral or self.trim_borders or bool(self.centre_crops))


def edited_copies(image: Image.Image, options: VariantOptions) -> Iterator[tuple[str, Image.Image]]:
    """The copies of an RGB frame (at most 512 pixels a side) whose PDQ hashes are searched,
    each named after the edit it undoes; each at most :data:`VARIANT_SIDE` pixels a side."""
    # Everything is cut from one copy at most twice the variant size: shrinking a 512-pixel frame
    # by a whole factor first is cheap, and what is cut from it is shrunk again before hashing.
    factor = max(1, max(image.size) // (2 * VARIANT_SIDE))
    base = image.reduce(factor) if factor > 1 else image
    if options.dihedral:
        yield from _dihedral("", _shrink(base))
    if options.trim_borders:
        box = uniform_border_box(base)
        if box is not None:
            trimmed = _shrink(base.crop(box))
            yield TRIMMED, trimmed
            # Only an upload with a border pays for these, and a mirrored copy in a frame is as
            # easy to make as either edit alone.
            if options.dihedral:
                yield from _dihedral(TRIMMED_PREFIX, trimmed)
    for fraction in options.centre_crops:
        yield crop_name(fraction), _shrink(base.crop(centre_box(base.size, fraction)))


def _dihedral(prefix: str, image: Image.Image) -> Iterator[tuple[str, Image.Image]]:
    for name, undo in DIHEDRAL.items():
        yield prefix + name, image.transpose(undo)


def _shrink(image: Image.Image) -> Image.Image:
    scale = VARIANT_SIDE / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def centre_box(size: tuple[int, int], fraction: float) -> tuple[int, int, int, int]:
    """The central ``fraction`` of each side of an image of ``size``."""
    width, height = size
    keep_w, keep_h = max(1, round(width * fraction)), max(1, round(height * fraction))
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    return left, top, left + keep_w, top + keep_h


def uniform_border_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The box inside a uniform border (letterboxing, padding, a plain frame), or None if the
    image has no border worth trimming.

    Uniform in brightness, which is all PDQ sees: JPEG keeps colour at half resolution, so its
    errors in colour reach 16 pixels into a border from the picture's edge, its errors in
    brightness only 8.
    """
    pixels = np.asarray(image.convert("L"), dtype=np.int16)
    height, width = pixels.shape
    top, bottom, left, right = 0, height, 0, width
    # Rows first (over the full width), then columns within the rows kept, then rows again within
    # the columns kept: a letterbox and a pillarbox of different colours are both found.
    for _ in range(2):
        rows = pixels[top:bottom, left:right]
        top_cut = _border_lines(rows)
        bottom_cut = _border_lines(rows[::-1])
        top, bottom = top + top_cut, bottom - bottom_cut
        if bottom - top < MIN_TRIMMED_SIDE:
            return None
        columns = pixels[top:bottom, left:right].T
        left_cut = _border_lines(columns)
        right_cut = _border_lines(columns[::-1])
        left, right = left + left_cut, right - right_cut
        if right - left < MIN_TRIMMED_SIDE:
            return None
        if not (top_cut or bottom_cut or left_cut or right_cut):
            break
    cuts = (top, height - bottom, left, width - right)
    sides = (height, height, width, width)
    if not any(
        cut >= max(2, MIN_BORDER_SHARE * side) for cut, side in zip(cuts, sides, strict=True)
    ):
        return None
    return left, top, right, bottom


def _border_lines(lines: np.ndarray) -> int:
    """How many leading lines (``lines[0]`` is the outermost) are the outermost line's shade."""
    shade = int(np.median(lines[0]))
    count, chunk = 0, 1  # most images have no border: their first line settles it
    while count < len(lines):
        block = lines[count : count + chunk]
        close = np.abs(block - shade) <= BORDER_TOLERANCE
        different = np.flatnonzero(close.mean(axis=1) < BORDER_SHARE)
        if different.size:
            return count + int(different[0])
        count += len(block)
        chunk = 32
    return count
