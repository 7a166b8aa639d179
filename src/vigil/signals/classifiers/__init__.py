"""Classifiers: AI models that score an image per label, beside the hashers.

Built in: open_nsfw (first pass), NudeNet regions (optional AGPL extra) and apparent face age
(second pass); and any ONNX image classifier the operator configures.
"""

from vigil.signals.classifiers.base import (
    Classification,
    Classifier,
    ClassifierError,
    ClassifierFailure,
    ClassifierTimeout,
    Deadline,
    FailureKind,
    FrameView,
    ModelUnavailable,
    Region,
)
from vigil.signals.classifiers.suite import (
    ClassifierReport,
    ClassifierSuite,
    ModelStatus,
    frame_views,
)

__all__ = [
    "Classification",
    "Classifier",
    "ClassifierError",
    "ClassifierFailure",
    "ClassifierReport",
    "ClassifierSuite",
    "ClassifierTimeout",
    "Deadline",
    "FailureKind",
    "FrameView",
    "ModelStatus",
    "ModelUnavailable",
    "Region",
    "frame_views",
]
