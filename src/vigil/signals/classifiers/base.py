"""What a classifier is: frames in, a score per label out, with the model's name and version."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from PIL import Image


class ClassifierError(Exception):
    """A model could not classify an image (the image is then held, never allowed)."""


class ClassifierTimeout(ClassifierError):
    """The per-image budget ran out."""


class ModelUnavailable(ClassifierError):
    """A configured model could not be loaded: the message says what to do about it."""


@dataclass(frozen=True)
class FrameView:
    """One frame as a model sees it: RGB, at most the working size. A transparent frame is seen
    twice, over white and over black, since either is what a viewer might be shown."""

    frame: int
    image: Image.Image
    background: str | None = None


@dataclass(frozen=True)
class Region:
    """A labelled box in one frame, in the frame's (working-size) pixels."""

    label: str
    score: float
    frame: int
    box: tuple[int, int, int, int]  # left, top, width, height

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": round(self.score, 4),
            "frame": self.frame,
            "box": list(self.box),
        }


@dataclass(frozen=True)
class Classification:
    """One model's verdict on one image: the highest score of each label over the frames seen."""

    model: str
    version: str
    scores: Mapping[str, float]
    views: int  # frame views classified
    seconds: float = 0.0
    top_frames: Mapping[str, int] = field(default_factory=dict)
    regions: tuple[Region, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "scores": {label: round(score, 6) for label, score in self.scores.items()},
            "views": self.views,
            "milliseconds": round(self.seconds * 1000, 1),
        }
        if self.top_frames:
            record["top_frames"] = dict(self.top_frames)
        if self.regions:
            record["regions"] = [region.as_dict() for region in self.regions]
        record.update(self.details)
        return record


class FailureKind(StrEnum):
    UNAVAILABLE = "unavailable"  # not loaded
    ERROR = "error"  # raised while classifying
    TIMEOUT = "timeout"  # the image's budget ran out first


@dataclass(frozen=True)
class ClassifierFailure:
    model: str
    kind: FailureKind
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "failure": self.kind.value, "message": self.message}


class Classifier(Protocol):
    """A loaded model. ``classify`` may be called from several threads at once."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def labels(self) -> tuple[str, ...]: ...

    def classify(self, views: Sequence[FrameView], deadline: Deadline) -> Classification: ...


class Deadline:
    """One image's time budget, shared by every model that classifies it.

    Whoever waits for the budget calls :meth:`cancel` when it is spent (the suite does):
    onnxruntime checks each run's ``terminate`` flag between operators, so a run still going is
    stopped rather than left to finish in the background. Work between runs calls :meth:`check`.
    """

    def __init__(self, seconds: float) -> None:
        self.expires = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._running: set[ort.RunOptions] = set()
        self._cancelled = False

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        if self._cancelled or time.monotonic() >= self.expires:
            raise ClassifierTimeout("the classification budget for this image ran out")

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            for options in self._running:
                options.terminate = True

    def run(
        self, session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]
    ) -> list[np.ndarray]:
        """``session.run`` for every output, stopped if the budget runs out meanwhile."""
        options = ort.RunOptions()
        with self._lock:
            self.check()
            self._running.add(options)
        try:
            outputs: list[np.ndarray] = session.run(None, dict(feeds), options)
        except Exception as error:
            if self._cancelled:
                raise ClassifierTimeout(
                    "the classification budget for this image ran out"
                ) from error
            raise
        finally:
            with self._lock:
                self._running.discard(options)
        return outputs
