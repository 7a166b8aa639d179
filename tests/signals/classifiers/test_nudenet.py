"""NudeNet regions: Vigil prepares frames and reads detections itself, and must agree with the
package's own detector; without the optional extra it says how to install it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import nudenet
import numpy as np
import pytest
from nudenet import NudeDetector
from PIL import Image

from tests.signals.classifiers.real_images import astronaut
from vigil.signals.classifiers import Classification, Deadline, FrameView, ModelUnavailable
from vigil.signals.classifiers.nudenet import LABELS, NudeNet

# Both scale frames with OpenCV's bilinear filter: only float rounding may differ.
SCORE_TOLERANCE = 0.001
BOX_TOLERANCE = 3  # pixels


@pytest.fixture(scope="module")
def detector() -> NudeNet:
    return NudeNet(threads=1)


@pytest.fixture(scope="module")
def reference() -> NudeDetector:
    return NudeDetector()


def reference_detections(reference: NudeDetector, image: Image.Image) -> list[dict[str, Any]]:
    """The package's detections, given RGBA pixels: its reader converts "RGBA to BGR" and then
    swaps red and blue again, so RGBA is the input that reaches the model as RGB."""
    detections: list[dict[str, Any]] = reference.detect(np.asarray(image.convert("RGBA")))
    return detections


def classify(detector: NudeNet, image: Image.Image) -> Classification:
    return detector.classify([FrameView(0, image)], Deadline(30.0))


def assert_boxes_close(ours: Sequence[int], theirs: Sequence[int]) -> None:
    assert len(ours) == len(theirs) == 4
    assert all(abs(a - b) <= BOX_TOLERANCE for a, b in zip(ours, theirs, strict=True)), (
        ours,
        theirs,
    )


def test_astronaut_matches_the_package_detector(detector: NudeNet, reference: NudeDetector) -> None:
    image = astronaut()
    expected = reference_detections(reference, image)
    assert expected, "the package finds the astronaut's face"

    result = classify(detector, image)

    expected_labels = {detection["class"].lower() for detection in expected}
    assert {label for label, score in result.scores.items() if score > 0} == expected_labels
    assert {region.label for region in result.regions} == expected_labels
    for label in expected_labels:
        best = max(d["score"] for d in expected if d["class"].lower() == label)
        assert result.scores[label] == pytest.approx(best, abs=SCORE_TOLERANCE)
        assert result.top_frames[label] == 0
    assert len(result.regions) == len(expected)
    for region in result.regions:
        (match,) = (d for d in expected if d["class"].lower() == region.label)
        assert region.score == pytest.approx(match["score"], abs=SCORE_TOLERANCE)
        assert region.frame == 0
        assert_boxes_close(region.box, match["box"])


@pytest.mark.parametrize(
    ("rows", "columns"),
    [
        pytest.param(slice(60, 400), slice(None), id="wide-padded-below"),
        pytest.param(slice(None), slice(100, 400), id="tall-padded-right"),
    ],
)
def test_boxes_are_left_top_width_height_in_frame_pixels(
    detector: NudeNet, reference: NudeDetector, rows: slice, columns: slice
) -> None:
    """A frame that is not square is padded before scaling: boxes come back in its own pixels."""
    image = Image.fromarray(np.ascontiguousarray(np.asarray(astronaut())[rows, columns]), "RGB")
    expected = reference_detections(reference, image)
    assert expected

    result = classify(detector, image)

    assert sorted(r.label for r in result.regions) == sorted(d["class"].lower() for d in expected)
    width, height = image.size
    for region, match in zip(
        sorted(result.regions, key=lambda r: r.box),
        sorted(expected, key=lambda d: d["box"]),
        strict=True,
    ):
        assert_boxes_close(region.box, match["box"])
        left, top, box_width, box_height = region.box
        assert left >= 0
        assert top >= 0
        assert box_width > 0
        assert box_height > 0
        assert left + box_width <= width
        assert top + box_height <= height


def test_every_label_has_a_score(detector: NudeNet) -> None:
    result = classify(detector, astronaut())

    assert len(LABELS) == 18
    assert set(result.scores) == set(LABELS)
    assert all(0.0 <= score <= 1.0 for score in result.scores.values())


def test_labels_are_the_package_classes_in_order() -> None:
    assert [label.upper() for label in LABELS] == nudenet.nudenet.__labels


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (128, 128, 128)])
def test_blank_image_finds_nothing(detector: NudeNet, colour: tuple[int, int, int]) -> None:
    result = classify(detector, Image.new("RGB", (400, 300), colour))

    assert result.regions == ()
    assert result.top_frames == {}
    assert set(result.scores) == set(LABELS)
    assert all(score == 0.0 for score in result.scores.values())


def test_regions_are_reported_for_the_frame_they_were_found_in(detector: NudeNet) -> None:
    blank = Image.new("RGB", (512, 512), (255, 255, 255))
    result = detector.classify([FrameView(2, blank), FrameView(7, astronaut())], Deadline(30.0))

    assert result.views == 2
    assert result.regions
    assert {region.frame for region in result.regions} == {7}
    assert result.top_frames["face_female"] == 7


def test_without_the_extra_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "nudenet", None)  # as if the package were not installed

    with pytest.raises(ModelUnavailable, match=r"vigil\[nudenet\]"):
        NudeNet(threads=1)
