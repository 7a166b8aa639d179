"""NudeNet's body-part detector (YOLOv8n, 320 px): per-region labels for images the first pass
flags.

NudeNet is AGPL-3.0, so it is an optional extra (``pip install 'vigil[nudenet]'``) that the
operator chooses; Vigil uses only the model file inside that package and prepares frames and
reads detections itself, so the model runs under Vigil's thread count and time budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
from PIL import Image

from vigil.signals.classifiers.base import (
    Classification,
    Deadline,
    FrameView,
    ModelUnavailable,
    Region,
)
from vigil.signals.classifiers.sessions import file_sha256, open_session

NAME = "nudenet"
INSTALL_HINT = (
    "the nudenet model is enabled but its optional extra is not installed; "
    "install it with: pip install 'vigil[nudenet]' (NudeNet is AGPL-3.0), "
    "or set classifiers.nudenet = false"
)
# The model's classes, in the order of its outputs.
LABELS = (
    "female_genitalia_covered",
    "face_female",
    "buttocks_exposed",
    "female_breast_exposed",
    "female_genitalia_exposed",
    "male_breast_exposed",
    "anus_exposed",
    "feet_exposed",
    "belly_covered",
    "feet_covered",
    "armpits_covered",
    "armpits_exposed",
    "face_male",
    "belly_exposed",
    "male_genitalia_exposed",
    "anus_covered",
    "female_breast_covered",
    "buttocks_covered",
)
_INPUT = 320
Resize = Callable[[np.ndarray, tuple[int, int]], np.ndarray]
_MIN_SCORE = 0.2  # detections weaker than this are noise at this model size
_REGION_SCORE = 0.25
_OVERLAP = 0.45


class NudeNet:
    name = NAME
    labels = LABELS

    def __init__(self, threads: int) -> None:
        try:
            import cv2
            import nudenet
        except ImportError as error:
            raise ModelUnavailable(INSTALL_HINT) from error
        self._resize: Resize = lambda pixels, size: cv2.resize(
            pixels, size, interpolation=cv2.INTER_LINEAR
        )
        path = Path(nudenet.__file__).parent / "320n.onnx"
        if not path.is_file():
            raise ModelUnavailable(f"the nudenet package has no model file at {path}")
        self._session = open_session(path, threads)
        self._input = self._session.get_inputs()[0].name
        self.version = f"{package_version('nudenet')}+{file_sha256(path)[:12]}"

    def classify(self, views: Sequence[FrameView], deadline: Deadline) -> Classification:
        started = time.perf_counter()
        batch = np.stack([_prepare(view.image, self._resize) for view in views])
        (output,) = deadline.run(self._session, {self._input: batch})
        scores = dict.fromkeys(LABELS, 0.0)
        top_frames: dict[str, int] = {}
        regions: list[Region] = []
        for view, rows in zip(views, np.asarray(output), strict=True):
            found = _detections(rows.T, view)
            for region in found:
                if region.score > scores[region.label]:
                    scores[region.label] = region.score
                    top_frames[region.label] = view.frame
            regions.extend(region for region in found if region.score >= _REGION_SCORE)
        return Classification(
            model=self.name,
            version=self.version,
            scores=scores,
            views=len(views),
            seconds=time.perf_counter() - started,
            top_frames=top_frames,
            regions=tuple(_distinct(regions)),
        )


def _prepare(image: Image.Image, resize: Resize) -> np.ndarray:
    """Pad to a square at the bottom and right (as the model was trained), scale to 320 px,
    and lay out as CHW floats in 0-1."""
    side = max(image.size)
    square = Image.new("RGB", (side, side))
    square.paste(image, (0, 0))
    # OpenCV's bilinear resize, as in training: Pillow's smooths when shrinking, and moves
    # scores by several hundredths.
    scaled = resize(np.asarray(square), (_INPUT, _INPUT))
    return np.asarray(scaled, dtype=np.float32).transpose(2, 0, 1) / 255.0


def _detections(rows: np.ndarray, view: FrameView) -> list[Region]:
    """Rows of (centre x, centre y, width, height, one score per class) in model pixels."""
    class_scores = rows[:, 4:]
    best = class_scores.max(axis=1)
    keep = best >= _MIN_SCORE
    if not keep.any():
        return []
    scale = max(view.image.size) / _INPUT
    width, height = view.image.size
    regions = []
    for row, score, label_index in zip(
        rows[keep], best[keep], class_scores[keep].argmax(axis=1), strict=True
    ):
        cx, cy, w, h = (float(value) * scale for value in row[:4])
        left = min(max(cx - w / 2, 0.0), width)
        top = min(max(cy - h / 2, 0.0), height)
        box = (int(left), int(top), int(min(w, width - left)), int(min(h, height - top)))
        regions.append(Region(LABELS[int(label_index)], float(score), view.frame, box))
    return regions


def _distinct(regions: list[Region]) -> list[Region]:
    """Greedy non-maximum suppression: of boxes that overlap heavily in one frame, the
    strongest stands for them all."""
    kept: list[Region] = []
    for region in sorted(regions, key=lambda r: -r.score):
        if all(
            other.frame != region.frame or _overlap(other.box, region.box) < _OVERLAP
            for other in kept
        ):
            kept.append(region)
    return kept


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (left, top, width, height) boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    shared = width * height
    return shared / (a[2] * a[3] + b[2] * b[3] - shared)
