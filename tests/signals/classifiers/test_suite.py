"""The classifier suite: which models run on an image, what becomes of the ones that cannot
answer, which frames are looked at, and that each model is loaded once per process."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tests.onnx_models import (
    brightness_model,
    constant_model,
    corrupt_model,
    failing_model,
    slow_model,
)
from vigil.config import ClassifierSettings, CustomModelSettings
from vigil.intake import Frame
from vigil.signals.classifiers import (
    Classification,
    ClassifierFailure,
    ClassifierReport,
    ClassifierSuite,
    FailureKind,
    frame_views,
)

SEXUAL_LABEL = "nude"
SUSPECT_AT = 0.5

SuiteFactory = Callable[..., ClassifierSuite]


def batch_of_one_model(path: Path) -> Path:
    """Loads and passes its trial run, but was exported for one image at a time: a batch of
    several views makes onnxruntime fail."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=1),
            helper.make_node("Reshape", ["mean", "one_by_one"], ["scores"]),
        ],
        "batch-of-one",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1])],
        [
            numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "one_by_one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def custom(
    name: str, path: Path, labels: Sequence[str], *, second_pass: bool = False, **overrides: Any
) -> CustomModelSettings:
    """A custom model fed plain 0-1 pixel values at a small size."""
    plain: dict[str, Any] = {
        "name": name,
        "path": path,
        "labels": list(labels),
        "second_pass": second_pass,
        "input_size": (16, 16),
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
    }
    return CustomModelSettings(**(plain | overrides))


def constant(
    tmp_path: Path, name: str, scores: dict[str, float], *, second_pass: bool = False
) -> CustomModelSettings:
    path = constant_model(tmp_path / f"{name}.onnx", list(scores.values()))
    return custom(name, path, list(scores), second_pass=second_pass)


@pytest.fixture
def make_suite() -> Iterator[SuiteFactory]:
    """Suites with no built-in models, only the custom ones given; closed after the test."""
    built: list[ClassifierSuite] = []

    def build(*models: CustomModelSettings, **settings: Any) -> ClassifierSuite:
        defaults: dict[str, Any] = {
            "opennsfw": False,
            "face_age": False,
            "nudenet": False,
            "threads": 1,
        }
        classifier_settings = ClassifierSettings(custom=list(models), **(defaults | settings))
        suite = ClassifierSuite(
            classifier_settings, sexual_labels=[SEXUAL_LABEL], suspect_at=SUSPECT_AT
        )
        built.append(suite)
        return suite

    yield build
    for suite in built:
        suite.close()


def grey_frames(count: int = 1) -> list[Frame]:
    return [Frame(index, Image.new("RGB", (40, 30), (90, 90, 90))) for index in range(count)]


def models_that_answered(report: ClassifierReport) -> set[str]:
    return {result.model for result in report.results}


def failure_of(report: ClassifierReport, model: str) -> ClassifierFailure:
    (failure,) = (failure for failure in report.failures if failure.model == model)
    return failure


# Which models run


@pytest.mark.parametrize("first_pass_score", [SUSPECT_AT, 0.8, 1.0])
def test_second_pass_runs_when_a_sexual_label_reaches_suspect_at(
    tmp_path: Path, make_suite: SuiteFactory, first_pass_score: float
) -> None:
    suite = make_suite(
        constant(tmp_path, "first", {SEXUAL_LABEL: first_pass_score}),
        constant(tmp_path, "regions", {"exposed": 0.9}, second_pass=True),
    )

    report = suite.classify(grey_frames())

    assert report.second_pass
    assert models_that_answered(report) == {"first", "regions"}
    assert report.failures == ()
    assert report.best("exposed")[0] == pytest.approx(0.9)


@pytest.mark.parametrize("first_pass_score", [0.0, 0.3, SUSPECT_AT - 0.01])
def test_second_pass_is_skipped_below_suspect_at(
    tmp_path: Path, make_suite: SuiteFactory, first_pass_score: float
) -> None:
    suite = make_suite(
        constant(tmp_path, "first", {SEXUAL_LABEL: first_pass_score}),
        constant(tmp_path, "regions", {"exposed": 0.9}, second_pass=True),
    )

    report = suite.classify(grey_frames())

    assert not report.second_pass
    assert models_that_answered(report) == {"first"}
    assert report.failures == ()  # skipped is not failed


def test_a_high_score_for_a_label_that_is_not_sexual_does_not_run_the_second_pass(
    tmp_path: Path, make_suite: SuiteFactory
) -> None:
    suite = make_suite(
        constant(tmp_path, "first", {"gore": 0.99, SEXUAL_LABEL: 0.1}),
        constant(tmp_path, "regions", {"exposed": 0.9}, second_pass=True),
    )

    report = suite.classify(grey_frames())

    assert not report.second_pass
    assert models_that_answered(report) == {"first"}


def test_every_model_runs_the_second_pass_whatever_the_first_found(
    tmp_path: Path, make_suite: SuiteFactory
) -> None:
    suite = make_suite(
        constant(tmp_path, "first", {SEXUAL_LABEL: 0.0}),
        constant(tmp_path, "regions", {"exposed": 0.9}, second_pass=True),
    )

    report = suite.classify(grey_frames(), every_model=True)

    assert report.second_pass
    assert models_that_answered(report) == {"first", "regions"}


def test_second_pass_runs_when_a_first_pass_model_could_not_load(
    tmp_path: Path, make_suite: SuiteFactory
) -> None:
    suite = make_suite(
        constant(tmp_path, "first", {SEXUAL_LABEL: 0.0}),
        custom("broken", corrupt_model(tmp_path / "broken.onnx"), [SEXUAL_LABEL]),
        constant(tmp_path, "regions", {"exposed": 0.9}, second_pass=True),
    )

    report = suite.classify(grey_frames())

    assert report.second_pass
    assert models_that_answered(report) == {"first", "regions"}
    assert failure_of(report, "broken").kind is FailureKind.UNAVAILABLE


def test_second_pass_runs_when_a_first_pass_model_raised(
    tmp_path: Path, make_suite: SuiteFactory
) -> None:
    suite = make_suite(
        constant(tmp_path, "first", {SEXUAL_LABEL: 0.0}),
        custom("one_at_a_time", batch_of_one_model(tmp_path / "one.onnx"), [SEXUAL_LABEL]),
        constant(tmp_path, "regions", {"exposed": 0.9}, second_pass=True),
    )

    report = suite.classify(grey_frames(2))

    assert report.second_pass
    assert models_that_answered(report) == {"first", "regions"}
    assert failure_of(report, "one_at_a_time").kind is FailureKind.ERROR


# What becomes of models that cannot answer


def test_a_model_that_raises_is_an_error_and_the_others_still_answer(
    tmp_path: Path, make_suite: SuiteFactory
) -> None:
    suite = make_suite(
        custom("one_at_a_time", batch_of_one_model(tmp_path / "one.onnx"), ["anything"]),
        custom("brightness", brightness_model(tmp_path / "bright.onnx"), ["brightness"]),
    )

    single = suite.classify(grey_frames(1))
    several = suite.classify(grey_frames(3))

    assert single.failures == ()  # one view is what the model was made for
    assert models_that_answered(single) == {"one_at_a_time", "brightness"}
    failure = failure_of(several, "one_at_a_time")
    assert failure.kind is FailureKind.ERROR
    assert failure.message
    assert "\n" not in failure.message
    assert models_that_answered(several) == {"brightness"}
    assert several.best("brightness")[0] == pytest.approx(90 / 255, abs=1e-5)


@pytest.mark.parametrize(
    ("build_model", "reason"),
    [
        pytest.param(corrupt_model, "not a model onnxruntime can load", id="corrupt"),
        pytest.param(failing_model, "failed its trial run", id="fails-every-run"),
    ],
)
def test_a_model_that_cannot_load_is_unavailable_on_every_image(
    tmp_path: Path,
    make_suite: SuiteFactory,
    build_model: Callable[[Path], Path],
    reason: str,
) -> None:
    suite = make_suite(
        custom("broken", build_model(tmp_path / "broken.onnx"), ["anything"]),
        custom("brightness", brightness_model(tmp_path / "bright.onnx"), ["brightness"]),
    )

    statuses = {status.name: status for status in suite.load()}
    reports = [suite.classify(grey_frames()) for _ in range(3)]

    broken, working = statuses["broken"], statuses["brightness"]
    assert not broken.loaded
    assert broken.version is None
    assert broken.error is not None
    assert reason in broken.error
    assert broken.as_dict()["error"] == broken.error
    assert working.loaded
    assert working.error is None
    assert working.version
    assert suite.status() == list(statuses.values())
    for report in reports:
        failure = failure_of(report, "broken")
        assert failure.kind is FailureKind.UNAVAILABLE
        assert failure.message == broken.error
        assert models_that_answered(report) == {"brightness"}


def test_a_second_pass_model_that_cannot_load_holds_even_a_clean_image(
    tmp_path: Path, make_suite: SuiteFactory
) -> None:
    suite = make_suite(
        constant(tmp_path, "first", {SEXUAL_LABEL: 0.0}),
        custom("regions", corrupt_model(tmp_path / "regions.onnx"), ["exposed"], second_pass=True),
    )

    report = suite.classify(grey_frames())

    assert not report.second_pass
    assert models_that_answered(report) == {"first"}
    assert failure_of(report, "regions").kind is FailureKind.UNAVAILABLE


def test_a_slow_model_times_out_and_is_stopped(tmp_path: Path, make_suite: SuiteFactory) -> None:
    slow = custom("slow", slow_model(tmp_path / "slow.onnx", multiplications=40), [SEXUAL_LABEL])
    suite = make_suite(
        custom("brightness", brightness_model(tmp_path / "bright.onnx"), ["brightness"]),
        slow,
        constant(tmp_path, "regions", {"exposed": 0.9}, second_pass=True),
        budget_seconds=0.1,
        concurrency=1,
    )
    started = time.perf_counter()
    suite.load()  # tries each model once, so this includes one whole run of the slow model
    load_seconds = time.perf_counter() - started

    started = time.perf_counter()
    first = suite.classify(grey_frames())
    classify_seconds = time.perf_counter() - started
    # Had the slow run been left to finish, the one worker would still be busy with it and
    # nothing at all would answer for the next image.
    second = suite.classify(grey_frames())

    assert classify_seconds < load_seconds / 2
    for report in (first, second):
        assert failure_of(report, "slow").kind is FailureKind.TIMEOUT
        # The second pass was never decided, so it did not answer either: the image is held.
        assert failure_of(report, "regions").kind is FailureKind.TIMEOUT
        assert models_that_answered(report) == {"brightness"}


# Which frames, and how they are seen


@pytest.mark.parametrize("frame_count", [1, 2, 4])
def test_sample_takes_every_frame_when_there_are_few(
    make_suite: SuiteFactory, frame_count: int
) -> None:
    assert make_suite(max_frames=4).sample(frame_count) == frozenset(range(frame_count))


@pytest.mark.parametrize(("frame_count", "max_frames"), [(5, 4), (10, 4), (100, 8), (300, 300)])
def test_sample_spreads_frames_evenly_from_first_to_last(
    make_suite: SuiteFactory, frame_count: int, max_frames: int
) -> None:
    chosen = sorted(make_suite(max_frames=max_frames).sample(frame_count))

    assert len(chosen) == min(frame_count, max_frames)
    assert chosen[0] == 0
    assert chosen[-1] == frame_count - 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(chosen)]
    assert max(gaps) - min(gaps) <= 1


def test_sample_of_ten_frames_by_four() -> None:
    suite = ClassifierSuite(
        ClassifierSettings(opennsfw=False, face_age=False, max_frames=4), [SEXUAL_LABEL], 0.5
    )

    assert suite.sample(10) == frozenset({0, 3, 6, 9})
    assert not suite.configured


def test_sample_of_one_frame_is_the_first(make_suite: SuiteFactory) -> None:
    assert make_suite(max_frames=1).sample(50) == frozenset({0})


def test_transparent_frame_is_seen_over_white_and_over_black(
    tmp_path: Path, make_suite: SuiteFactory
) -> None:
    suite = make_suite(
        custom("brightness", brightness_model(tmp_path / "bright.onnx"), ["brightness"])
    )
    invisible = Frame(2, Image.new("RGBA", (32, 32), (0, 0, 0, 0)))

    report = suite.classify([invisible])

    (result,) = report.results
    assert result.views == 2
    assert result.scores["brightness"] == pytest.approx(1.0)  # over white
    assert result.top_frames == {"brightness": 2}
    assert report.frames == (2,)


def test_frame_views_composite_transparency_on_both_backgrounds() -> None:
    half_red = Image.new("RGBA", (4, 4), (255, 0, 0, 128))

    over_white, over_black = frame_views(Frame(7, half_red))

    assert (over_white.frame, over_white.background) == (7, "white")
    assert (over_black.frame, over_black.background) == (7, "black")
    assert over_white.image.mode == over_black.image.mode == "RGB"
    red_on_white = np.asarray(over_white.image)[0, 0]
    red_on_black = np.asarray(over_black.image)[0, 0]
    assert red_on_white[0] == 255
    assert 120 <= red_on_white[1] <= 135
    assert 120 <= red_on_black[0] <= 135
    assert red_on_black[1] == 0


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_opaque_frame_is_seen_once_in_rgb(mode: str) -> None:
    frame = Frame(3, Image.new("RGB", (8, 8), (10, 20, 30)).convert(mode))

    (view,) = frame_views(frame)

    assert view.frame == 3
    assert view.background is None
    assert view.image.mode == "RGB"


# Reading a report


def test_best_is_the_highest_score_across_models(tmp_path: Path, make_suite: SuiteFactory) -> None:
    suite = make_suite(
        constant(tmp_path, "cautious", {SEXUAL_LABEL: 0.3, "gore": 0.6}),
        constant(tmp_path, "eager", {SEXUAL_LABEL: 0.45}),
    )

    report = suite.classify(grey_frames())

    score, source = report.best(SEXUAL_LABEL)
    assert score == pytest.approx(0.45)
    assert source is not None
    assert source.model == "eager"
    gore, gore_source = report.best("gore")
    assert gore == pytest.approx(0.6)
    assert gore_source is not None
    assert gore_source.model == "cautious"
    assert report.best("violence") == (0.0, None)


def test_best_reports_a_zero_score_with_its_model() -> None:
    silent = Classification("silent", "1", {"gore": 0.0}, views=1)
    report = ClassifierReport((silent,))

    assert report.best("gore") == (0.0, silent)


# Loading once per process


def test_a_model_is_loaded_once_and_shared_by_every_suite(
    tmp_path: Path, make_suite: SuiteFactory
) -> None:
    settings = custom("brightness", brightness_model(tmp_path / "bright.onnx"), ["brightness"])
    first = make_suite(settings)
    assert [status.loaded for status in first.load()] == [True]
    settings.path.unlink()  # from now on the model can only come from the shared cache

    second = make_suite(settings)
    with_other_threads = make_suite(settings, threads=2)

    assert [status.loaded for status in second.load()] == [True]
    assert second.classify(grey_frames()).best("brightness")[0] == pytest.approx(90 / 255)
    (other,) = with_other_threads.load()
    assert not other.loaded  # a different thread count is a different session
    assert other.error is not None
    assert "cannot be read" in other.error
