"""Apparent face age: an adult's face scores no minor risk, no face scores none, and the graded
score falls from certain to clear across the ages the estimate is unsure of."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from tests.signals.classifiers.real_images import astronaut
from vigil.signals.classifiers import ClassifierTimeout, Deadline, FrameView
from vigil.signals.classifiers.face_age import CERTAIN_AGE, CLEAR_AGE, FaceAge, apparent_minor_score


@pytest.fixture(scope="module")
def face_age() -> FaceAge:
    return FaceAge(threads=1)


def test_astronaut_is_one_adult_face(face_age: FaceAge) -> None:
    image = astronaut()

    result = face_age.classify([FrameView(3, image)], Deadline(30.0))

    (face,) = result.details["faces"]
    assert face["frame"] == 3
    assert face["apparent_age"] >= CLEAR_AGE
    assert result.scores == {"apparent_minor": 0.0}
    assert result.top_frames == {"apparent_minor": 3}
    left, top, width, height = face["box"]
    assert width >= 40
    assert height >= 40
    assert left >= 0
    assert top >= 0
    assert left + width <= image.width
    assert top + height <= image.height


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (128, 128, 128)])
def test_blank_image_has_no_faces(face_age: FaceAge, colour: tuple[int, int, int]) -> None:
    result = face_age.classify([FrameView(0, Image.new("RGB", (320, 240), colour))], Deadline(30.0))

    assert result.details["faces"] == []
    assert result.scores == {"apparent_minor": 0.0}
    assert result.top_frames == {}


def test_faces_are_collected_from_every_view(face_age: FaceAge) -> None:
    blank = Image.new("RGB", (320, 240), (255, 255, 255))

    result = face_age.classify([FrameView(0, blank), FrameView(5, astronaut())], Deadline(30.0))

    assert result.views == 2
    assert [face["frame"] for face in result.details["faces"]] == [5]


def test_expired_budget_stops_before_the_next_view(face_age: FaceAge) -> None:
    deadline = Deadline(30.0)
    deadline.cancel()

    with pytest.raises(ClassifierTimeout):
        face_age.classify([FrameView(0, Image.new("RGB", (64, 64)))], deadline)


@pytest.mark.parametrize("age", [0.0, 5.0, 12.0, CERTAIN_AGE])
def test_apparent_minor_is_certain_at_thirteen_or_younger(age: float) -> None:
    assert apparent_minor_score(age) == 1.0


@pytest.mark.parametrize("age", [CLEAR_AGE, 30.0, 45.0, 90.0])
def test_apparent_minor_is_clear_at_twenty_five_or_older(age: float) -> None:
    assert apparent_minor_score(age) == 0.0


def test_apparent_minor_falls_steadily_between() -> None:
    ages = np.linspace(CERTAIN_AGE, CLEAR_AGE, 49)
    scores = [apparent_minor_score(float(age)) for age in ages]

    assert all(later < earlier for earlier, later in itertools.pairwise(scores))
    assert apparent_minor_score(17.0) > apparent_minor_score(18.0) > 0.0
    assert apparent_minor_score((CERTAIN_AGE + CLEAR_AGE) / 2) == pytest.approx(0.5)
