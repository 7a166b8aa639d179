"""Any ONNX image classifier the operator configures: a gore or violence model, a site's own.

The configuration says how the model wants its input (size, layout, channel order,
normalisation) and names its outputs; the model is tried once on a blank image when it loads,
so a mismatch is reported at start-up rather than at the first upload.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

from vigil.config import CustomModelSettings
from vigil.signals.classifiers.base import (
    Classification,
    ClassifierError,
    Deadline,
    FrameView,
    ModelUnavailable,
)
from vigil.signals.classifiers.sessions import file_sha256, open_session


class OnnxImageClassifier:
    def __init__(self, spec: CustomModelSettings, threads: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.labels = tuple(spec.labels)
        path = spec.path.expanduser()
        self.version = spec.version or file_sha256(path)[:12]
        self._session = open_session(path, threads)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelUnavailable(
                f"model {self.name!r} takes {len(inputs)} inputs; an image classifier takes one"
            )
        self._input = inputs[0].name
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)
        blank = FrameView(0, Image.new("RGB", spec.input_size))
        try:
            self.classify([blank], Deadline(60.0))
        except ClassifierError as error:
            raise ModelUnavailable(f"model {self.name!r} failed its trial run: {error}") from error
        except Exception as error:
            raise ModelUnavailable(
                f"model {self.name!r} failed its trial run: {_first_line(error)}"
            ) from error

    def classify(self, views: Sequence[FrameView], deadline: Deadline) -> Classification:
        started = time.perf_counter()
        batch = np.stack([self._prepare(view.image) for view in views])
        outputs = deadline.run(self._session, {self._input: batch})
        scores = self._probabilities(np.asarray(outputs[0]), len(views))
        best = scores.argmax(axis=0)
        return Classification(
            model=self.name,
            version=self.version,
            scores={label: float(scores[best[i], i]) for i, label in enumerate(self.labels)},
            views=len(views),
            seconds=time.perf_counter() - started,
            top_frames={label: views[int(best[i])].frame for i, label in enumerate(self.labels)},
        )

    def _prepare(self, image: Image.Image) -> np.ndarray:
        size = self.spec.input_size
        if self.spec.resize == "center_crop":
            image = ImageOps.fit(image, size, Image.Resampling.BILINEAR)
        elif self.spec.resize == "pad":
            image = ImageOps.pad(image, size, Image.Resampling.BILINEAR, color=(0, 0, 0))
        else:
            image = image.resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) * np.float32(self.spec.scale)
        if self.spec.channels == "bgr":
            pixels = pixels[:, :, ::-1]
        # mean and std are in the model's channel order, as its documentation gives them.
        pixels = (pixels - self._mean) / self._std
        if self.spec.layout == "nchw":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels, dtype=np.float32)

    def _probabilities(self, output: np.ndarray, rows: int) -> np.ndarray:
        expected = (rows, len(self.labels))
        if output.size != rows * len(self.labels):
            raise ClassifierError(
                f"model {self.name!r} gave output of shape {list(output.shape)}; with "
                f"{len(self.labels)} labels configured it should be {list(expected)}"
            )
        values = output.reshape(expected).astype(np.float64)
        if self.spec.output == "softmax":
            shifted = np.exp(values - values.max(axis=1, keepdims=True))
            values = shifted / shifted.sum(axis=1, keepdims=True)
        elif self.spec.output == "sigmoid":
            values = 1.0 / (1.0 + np.exp(-values))
        if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
            raise ClassifierError(
                f"model {self.name!r} gave scores outside 0-1; is its output "
                f"{self.spec.output!r}? (set output = 'softmax' or 'sigmoid' for raw logits)"
            )
        return values


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
