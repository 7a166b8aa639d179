"""Custom ONNX classifiers: the configuration says how a model wants its input and what its
output means, and a model that does not fit its configuration is refused when it loads."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tests.onnx_models import brightness_model, constant_model, corrupt_model
from vigil.config import CustomModelSettings
from vigil.signals.classifiers import (
    Classification,
    ClassifierError,
    Deadline,
    FrameView,
    ModelUnavailable,
)
from vigil.signals.classifiers.onnx_image import OnnxImageClassifier

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
CHANNEL_LABELS = ["red", "green", "blue"]


def channel_means_model(path: Path, layout: Literal["nchw", "nhwc"]) -> Path:
    """Three labels: the mean input value of each channel, for images laid out as ``layout``."""
    if layout == "nchw":
        image_shape: list[str | int] = ["batch", 3, "height", "width"]
        spatial_axes = [2, 3]
    else:
        image_shape = ["batch", "height", "width", 3]
        spatial_axes = [1, 2]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image", "axes"], ["scores"], keepdims=0)],
        f"channel-means-{layout}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, image_shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array(spatial_axes, dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def settings(path: Path, labels: list[str], **overrides: Any) -> CustomModelSettings:
    """A model fed plain 0-1 pixel values, so a test can work out what it must answer."""
    plain: dict[str, Any] = {
        "name": "test_model",
        "path": path,
        "labels": labels,
        "input_size": (32, 32),
        "scale": 1 / 255,
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
    }
    return CustomModelSettings(**(plain | overrides))


def classify_one(model: OnnxImageClassifier, image: Image.Image) -> Classification:
    return model.classify([FrameView(0, image)], Deadline(30.0))


def stripes(width: int = 300, height: int = 100) -> Image.Image:
    """Red, green and blue thirds, left to right: a wide picture whose centre is green."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    third = width // 3
    pixels[:, :third] = RED
    pixels[:, third : 2 * third] = GREEN
    pixels[:, 2 * third :] = BLUE
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def brightness(tmp_path: Path) -> OnnxImageClassifier:
    path = brightness_model(tmp_path / "brightness.onnx")
    return OnnxImageClassifier(settings(path, ["brightness"]), threads=1)


@pytest.mark.parametrize(
    ("colour", "expected"),
    [
        pytest.param((255, 255, 255), 1.0, id="white"),
        pytest.param((0, 0, 0), 0.0, id="black"),
        pytest.param((100, 100, 100), 100 / 255, id="grey-100"),
        pytest.param((200, 100, 0), 100 / 255, id="orange"),
    ],
)
def test_brightness_model_measures_brightness(
    brightness: OnnxImageClassifier, colour: tuple[int, int, int], expected: float
) -> None:
    result = classify_one(brightness, Image.new("RGB", (120, 80), colour))

    assert result.model == "test_model"
    assert result.scores == {"brightness": pytest.approx(expected, abs=1e-5)}


def test_highest_score_and_its_frame_over_several_views(brightness: OnnxImageClassifier) -> None:
    views = [
        FrameView(1, Image.new("RGB", (50, 50), (0, 0, 0))),
        FrameView(4, Image.new("RGB", (50, 50), (255, 255, 255))),
        FrameView(6, Image.new("RGB", (50, 50), (128, 128, 128))),
    ]

    result = brightness.classify(views, Deadline(30.0))

    assert result.views == 3
    assert result.scores["brightness"] == pytest.approx(1.0)
    assert result.top_frames == {"brightness": 4}


def test_probabilities_are_reported_as_given(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "constant.onnx", [0.25, 0.75])
    model = OnnxImageClassifier(settings(path, ["gore", "violence"]), threads=1)

    result = classify_one(model, Image.new("RGB", (64, 64), (10, 200, 30)))

    assert model.labels == ("gore", "violence")
    assert result.scores == {"gore": pytest.approx(0.25), "violence": pytest.approx(0.75)}


def test_softmax_turns_logits_into_probabilities(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "logits.onnx", [1.0, 3.0])
    model = OnnxImageClassifier(settings(path, ["safe", "unsafe"], output="softmax"), threads=1)

    result = classify_one(model, Image.new("RGB", (64, 64)))

    total = math.exp(1.0) + math.exp(3.0)
    assert result.scores == {
        "safe": pytest.approx(math.exp(1.0) / total),
        "unsafe": pytest.approx(math.exp(3.0) / total),
    }


def test_sigmoid_turns_each_logit_into_a_probability(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "logits.onnx", [0.0, 2.0, -2.0])
    model = OnnxImageClassifier(
        settings(path, ["even", "likely", "unlikely"], output="sigmoid"), threads=1
    )

    result = classify_one(model, Image.new("RGB", (64, 64)))

    assert result.scores == {
        "even": pytest.approx(0.5),
        "likely": pytest.approx(1 / (1 + math.exp(-2.0))),
        "unlikely": pytest.approx(1 / (1 + math.exp(2.0))),
    }


def test_mean_and_std_normalise_each_channel(tmp_path: Path) -> None:
    path = channel_means_model(tmp_path / "channels.onnx", "nchw")
    model = OnnxImageClassifier(
        settings(path, CHANNEL_LABELS, mean=(0.0, -0.25, 0.0), std=(2.0, 1.0, 1.0)), threads=1
    )

    result = classify_one(model, Image.new("RGB", (40, 40), (200, 100, 50)))

    assert result.scores == {
        "red": pytest.approx(200 / 255 / 2.0, abs=1e-5),
        "green": pytest.approx(100 / 255 + 0.25, abs=1e-5),
        "blue": pytest.approx(50 / 255, abs=1e-5),
    }


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ("rgb", {"red": 1.0, "green": 0.0, "blue": 0.0}),
        ("bgr", {"red": 0.0, "green": 0.0, "blue": 1.0}),
    ],
)
def test_channel_order(tmp_path: Path, channels: str, expected: dict[str, float]) -> None:
    path = channel_means_model(tmp_path / "channels.onnx", "nchw")
    model = OnnxImageClassifier(settings(path, CHANNEL_LABELS, channels=channels), threads=1)

    result = classify_one(model, Image.new("RGB", (40, 40), RED))

    assert result.scores == pytest.approx(expected, abs=1e-6)


def test_nhwc_layout_feeds_channels_last(tmp_path: Path) -> None:
    path = channel_means_model(tmp_path / "channels-last.onnx", "nhwc")
    model = OnnxImageClassifier(settings(path, CHANNEL_LABELS, layout="nhwc"), threads=1)

    result = classify_one(model, Image.new("RGB", (40, 40), (0, 51, 255)))

    assert result.scores == pytest.approx({"red": 0.0, "green": 0.2, "blue": 1.0}, abs=1e-5)


def test_wrong_layout_is_refused_when_the_model_loads(tmp_path: Path) -> None:
    path = channel_means_model(tmp_path / "channels-last.onnx", "nhwc")

    with pytest.raises(ModelUnavailable, match="failed its trial run"):
        OnnxImageClassifier(settings(path, CHANNEL_LABELS, layout="nchw"), threads=1)


@pytest.mark.parametrize(
    ("resize", "expected"),
    [
        # Squashed to a square: each stripe a third of the picture.
        pytest.param("stretch", {"red": 1 / 3, "green": 1 / 3, "blue": 1 / 3}, id="stretch"),
        # The centre square only: all green.
        pytest.param("center_crop", {"red": 0.0, "green": 1.0, "blue": 0.0}, id="center_crop"),
        # Scaled to fit and letterboxed in black: a third of the height is picture.
        pytest.param("pad", {"red": 1 / 9, "green": 1 / 9, "blue": 1 / 9}, id="pad"),
    ],
)
def test_resize_modes(tmp_path: Path, resize: str, expected: dict[str, float]) -> None:
    path = channel_means_model(tmp_path / "channels.onnx", "nchw")
    model = OnnxImageClassifier(
        settings(path, CHANNEL_LABELS, input_size=(60, 60), resize=resize), threads=1
    )

    result = classify_one(model, stripes())

    assert result.scores == pytest.approx(expected, abs=0.02)


def test_label_count_that_does_not_match_the_output_is_refused(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "three.onnx", [0.1, 0.2, 0.3])

    with pytest.raises(ModelUnavailable) as raised:
        OnnxImageClassifier(settings(path, ["gore", "violence"]), threads=1)

    message = str(raised.value)
    assert "'test_model' failed its trial run" in message
    assert "[1, 3]" in message  # what the model gave
    assert "[1, 2]" in message  # what two labels need
    assert "2 labels" in message


def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = corrupt_model(tmp_path / "corrupt.onnx")

    with pytest.raises(ModelUnavailable, match="not a model onnxruntime can load") as raised:
        OnnxImageClassifier(settings(path, ["gore"]), threads=1)

    assert str(path) in str(raised.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "model.onnx"

    with pytest.raises(ModelUnavailable, match="cannot be read") as raised:
        OnnxImageClassifier(settings(path, ["gore"]), threads=1)

    assert str(path) in str(raised.value)
    assert "No such file" in str(raised.value)


def test_missing_file_with_a_configured_version_says_not_found(tmp_path: Path) -> None:
    """With a version configured the file is not hashed first: onnxruntime is the first to look."""
    path = tmp_path / "nowhere" / "model.onnx"

    with pytest.raises(ModelUnavailable, match="model file not found") as raised:
        OnnxImageClassifier(settings(path, ["gore"], version="gore-2"), threads=1)

    assert str(path) in str(raised.value)


def test_scores_outside_zero_to_one_are_refused_when_the_model_loads(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "logits.onnx", [2.5, -1.0])

    with pytest.raises(ModelUnavailable, match="outside 0-1") as raised:
        OnnxImageClassifier(settings(path, ["safe", "unsafe"]), threads=1)

    assert "softmax" in str(raised.value)
    assert "sigmoid" in str(raised.value)


def test_scores_outside_zero_to_one_on_an_image_are_an_error(tmp_path: Path) -> None:
    """Fed 0-255 pixel values by mistake, the brightness model passes its trial on a black image
    and then answers 255 for a white one."""
    path = brightness_model(tmp_path / "brightness.onnx")
    model = OnnxImageClassifier(settings(path, ["brightness"], scale=1.0), threads=1)

    with pytest.raises(ClassifierError, match="outside 0-1") as raised:
        classify_one(model, Image.new("RGB", (64, 64), (255, 255, 255)))

    assert not isinstance(raised.value, ModelUnavailable)
    assert "softmax" in str(raised.value)


def test_version_defaults_to_the_start_of_the_file_sha256(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "constant.onnx", [0.5])
    model = OnnxImageClassifier(settings(path, ["gore"]), threads=1)

    assert model.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert classify_one(model, Image.new("RGB", (8, 8))).version == model.version


def test_configured_version_is_used(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "constant.onnx", [0.5])
    model = OnnxImageClassifier(settings(path, ["gore"], version="gore-2024.1"), threads=1)

    assert model.version == "gore-2024.1"
    assert classify_one(model, Image.new("RGB", (8, 8))).version == "gore-2024.1"
