"""The configured models, loaded once per process, run on each image within its time budget.

Every image gets the first pass (open_nsfw and any custom first-pass model). The second pass
(NudeNet regions, face ages, custom second-pass models) runs only when the first pass finds
the image possibly sexual, or could not say. Whatever goes wrong (a model not loaded, one
that raises, the budget running out) is reported as a failure, and the policy holds the image.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vigil.config import ClassifierSettings, CustomModelSettings, Settings
from vigil.intake import Frame
from vigil.signals.classifiers import face_age, nudenet, opennsfw
from vigil.signals.classifiers.base import (
    Classification,
    Classifier,
    ClassifierFailure,
    ClassifierTimeout,
    Deadline,
    FailureKind,
    FrameView,
    ModelUnavailable,
)
from vigil.signals.classifiers.onnx_image import OnnxImageClassifier

log = logging.getLogger(__name__)

Loader = Callable[[], Classifier]


@dataclass(frozen=True)
class ModelSpec:
    """A model the configuration asks for: enough to load it and to tell it apart."""

    name: str
    second_pass: bool
    key: tuple[Any, ...]  # equal keys share one loaded model in a process
    load: Loader


@dataclass(frozen=True)
class ModelStatus:
    name: str
    second_pass: bool
    loaded: bool
    version: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"loaded": self.loaded, "pass": 2 if self.second_pass else 1}
        if self.version:
            record["version"] = self.version
        if self.error:
            record["error"] = self.error
        return record


@dataclass(frozen=True)
class ClassifierReport:
    """What the models said about one image, and which of them could not say."""

    results: tuple[Classification, ...]
    failures: tuple[ClassifierFailure, ...] = ()
    second_pass: bool = False
    frames: tuple[int, ...] = ()

    def best(self, label: str) -> tuple[float, Classification | None]:
        """The highest score any model gave ``label``, and which model gave it."""
        score, source = 0.0, None
        for result in self.results:
            value = result.scores.get(label)
            if value is not None and (source is None or value > score):
                score, source = value, result
        return score, source

    def reaches(self, labels: Iterable[str], score: float) -> bool:
        """Some model scored one of ``labels`` at ``score`` or more."""
        return any(self.best(label)[0] >= score for label in labels)

    def as_record(self) -> list[dict[str, Any]]:
        return [result.as_dict() for result in self.results] + [
            failure.as_dict() for failure in self.failures
        ]


def model_specs(settings: ClassifierSettings) -> list[ModelSpec]:
    threads = settings.threads
    specs = []
    if settings.opennsfw:
        specs.append(
            ModelSpec(
                opennsfw.NAME, False, (opennsfw.NAME, threads), _build(opennsfw.OpenNsfw, threads)
            )
        )
    for custom in settings.custom:
        specs.append(
            ModelSpec(
                custom.name,
                custom.second_pass,
                ("custom", custom.model_dump_json(), threads),
                _build_custom(custom, threads),
            )
        )
    if settings.nudenet:
        specs.append(
            ModelSpec(nudenet.NAME, True, (nudenet.NAME, threads), _build(nudenet.NudeNet, threads))
        )
    if settings.face_age:
        specs.append(
            ModelSpec(face_age.NAME, True, (face_age.NAME,), _build(face_age.FaceAge, threads))
        )
    return specs


def _build(kind: Callable[[int], Classifier], threads: int) -> Loader:
    return lambda: kind(threads)


def _build_custom(spec: CustomModelSettings, threads: int) -> Loader:
    return lambda: OnnxImageClassifier(spec, threads)


# Loaded models, shared by every runtime in the process: weights are read once.
_loaded: dict[tuple[Any, ...], Classifier] = {}
_loading = threading.Lock()


def _load_shared(spec: ModelSpec) -> Classifier:
    with _loading:
        model = _loaded.get(spec.key)
        if model is None:
            model = _loaded[spec.key] = spec.load()
        return model


@dataclass
class _Slot:
    spec: ModelSpec
    model: Classifier | None = None
    error: str | None = None


class ClassifierSuite:
    """The models one runtime uses. ``load`` at start-up; ``classify`` per image."""

    def __init__(
        self, settings: ClassifierSettings, sexual_labels: Iterable[str], suspect_at: float
    ):
        self.settings = settings
        self._slots = [_Slot(spec) for spec in model_specs(settings)]
        self._sexual_labels = frozenset(sexual_labels)
        self._suspect_at = suspect_at
        self._loaded = False
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ClassifierSuite:
        risk = settings.policy.minor_risk
        return cls(settings.classifiers, risk.sexual_labels, risk.suspect_at)

    @property
    def configured(self) -> bool:
        return bool(self._slots)

    def load(self, *, log_failures: bool = True) -> list[ModelStatus]:
        """Load every configured model (once). A model that cannot load is reported, logged
        with what to do about it (unless the caller reports it), and makes every image held
        until it is fixed."""
        with self._lock:
            if not self._loaded:
                for slot in self._slots:
                    try:
                        slot.model = _load_shared(slot.spec)
                    except ModelUnavailable as error:
                        slot.error = str(error)
                    except Exception as error:
                        log.debug("model %s failed to load", slot.spec.name, exc_info=True)
                        slot.error = f"failed to load: {type(error).__name__}: {error}"
                    if slot.error and log_failures:
                        log.error(
                            "classifier %s is not loaded, so every image will be held: %s",
                            slot.spec.name,
                            slot.error,
                        )
                self._loaded = True
        return self.status()

    def status(self) -> list[ModelStatus]:
        return [
            ModelStatus(
                slot.spec.name,
                slot.spec.second_pass,
                slot.model is not None,
                slot.model.version if slot.model is not None else None,
                slot.error,
            )
            for slot in self._slots
        ]

    def classify(self, frames: Sequence[Frame], *, every_model: bool = False) -> ClassifierReport:
        """Run the models on ``frames`` (a sample of the image's frames) within the budget.

        ``every_model`` runs the second pass whatever the first pass found (calibration).
        """
        self.load()
        views = [view for frame in frames for view in frame_views(frame)]
        deadline = Deadline(self.settings.budget_seconds)
        run = _Run(views, deadline)
        future = self._pool().submit(self._run_passes, run, every_model)
        try:
            future.result(timeout=deadline.remaining())
        except FutureTimeout:
            deadline.cancel()
        return run.report(self._slots, tuple(frame.index for frame in frames))

    def sample(self, frame_count: int) -> frozenset[int]:
        """Which frames to classify: all of them up to ``max_frames``, else evenly spread ones
        (always the first and the last)."""
        limit = self.settings.max_frames
        if frame_count <= limit:
            return frozenset(range(frame_count))
        if limit == 1:
            return frozenset({0})
        step = (frame_count - 1) / (limit - 1)
        return frozenset(round(i * step) for i in range(limit))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.settings.concurrency, thread_name_prefix="vigil-classify"
                )
            return self._executor

    def _run_passes(self, run: _Run, every_model: bool) -> None:
        for slot in self._slots:
            if not slot.spec.second_pass:
                run.attempt(slot)
        run.decide_second_pass(every_model or self._suspicious(run))
        if run.second_pass:
            for slot in self._slots:
                if slot.spec.second_pass:
                    run.attempt(slot)

    def _suspicious(self, run: _Run) -> bool:
        """The first pass found the image possibly sexual, or could not tell."""
        results, failures = run.snapshot()
        first_pass = ClassifierReport(tuple(results), tuple(failures))
        return bool(failures) or first_pass.reaches(self._sexual_labels, self._suspect_at)


@dataclass
class _Run:
    """One image's classification, filled in by a pool thread while the caller waits. Once the
    caller has taken its report, anything the thread finishes later is discarded."""

    views: list[FrameView]
    deadline: Deadline
    second_pass: bool | None = None  # None: not decided yet
    _results: list[Classification] = field(default_factory=list)
    _failures: list[ClassifierFailure] = field(default_factory=list)
    _done: set[str] = field(default_factory=set)
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attempt(self, slot: _Slot) -> None:
        if self._closed:  # the caller stopped waiting (a queue backed up): no work for nothing
            return
        name = slot.spec.name
        if slot.model is None:
            self._finish(name, failure=(FailureKind.UNAVAILABLE, slot.error or "not loaded"))
            return
        try:
            result = slot.model.classify(self.views, self.deadline)
        except ClassifierTimeout as error:
            self._finish(name, failure=(FailureKind.TIMEOUT, str(error)))
        except Exception as error:
            log.warning("classifier %s failed on an image", name, exc_info=True)
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self._finish(name, failure=(FailureKind.ERROR, message or type(error).__name__))
        else:
            self._finish(name, result=result)

    def decide_second_pass(self, run: bool) -> None:
        with self._lock:
            self.second_pass = run

    def snapshot(self) -> tuple[list[Classification], list[ClassifierFailure]]:
        with self._lock:
            return list(self._results), list(self._failures)

    def report(self, slots: Sequence[_Slot], frames: tuple[int, ...]) -> ClassifierReport:
        with self._lock:
            self._closed = True
            failures = list(self._failures)
            for slot in slots:
                name = slot.spec.name
                if name in self._done:
                    continue
                if slot.model is None:
                    # A configured model that is missing holds every image, including those
                    # whose first pass would not have asked for it: the operator wanted it.
                    failures.append(
                        ClassifierFailure(name, FailureKind.UNAVAILABLE, slot.error or "not loaded")
                    )
                elif not (slot.spec.second_pass and self.second_pass is False):
                    failures.append(
                        ClassifierFailure(
                            name, FailureKind.TIMEOUT, "the classification budget ran out first"
                        )
                    )
            return ClassifierReport(
                tuple(self._results), tuple(failures), bool(self.second_pass), frames
            )

    def _finish(
        self,
        name: str,
        *,
        result: Classification | None = None,
        failure: tuple[FailureKind, str] | None = None,
    ) -> None:
        with self._lock:
            if self._closed:
                return
            self._done.add(name)
            if result is not None:
                self._results.append(result)
            if failure is not None:
                self._failures.append(ClassifierFailure(name, *failure))


def frame_views(frame: Frame) -> list[FrameView]:
    image = frame.image
    if image.mode != "RGBA":
        return [FrameView(frame.index, image if image.mode == "RGB" else image.convert("RGB"))]
    views = []
    for background, colour in (("white", (255, 255, 255)), ("black", (0, 0, 0))):
        canvas = Image.new("RGB", image.size, colour)
        canvas.paste(image, mask=image.getchannel("A"))
        views.append(FrameView(frame.index, canvas, background))
    return views
