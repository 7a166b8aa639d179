"""``vigil.calibrate``: thresholds suggested from a site's own labelled images.

The images are flat grey squares and the model is the tiny brightness model from
``tests.onnx_models`` (with no mean or std its score for ``bright`` is the grey level / 255), so
every score, false-positive rate, recall and precision below can be worked out by hand.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from PIL import Image

from tests.images import encode
from tests.onnx_models import brightness_model, corrupt_model, failing_model
from vigil.calibrate import (
    GRID,
    LabelReport,
    Point,
    ScoredFolder,
    default_labels,
    report_labels,
    score_folders,
    threshold_for,
)
from vigil.config import Settings, load_settings
from vigil.errors import InvalidRequest

# Grey levels, chosen so that no score lies within 1e-4 of a threshold used below.
DARK = (10, 40, 70, 100, 130)  # the brightest: 130 / 255 = 0.5098
BRIGHT = (180, 210, 240)  # the darkest: 180 / 255 = 0.7059


@pytest.fixture(autouse=True)
def _no_vigil_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the surrounding shell must not leak into what these tests check."""
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)


def write_brightness_config(
    path: Path, model: Path, thresholds: dict[str, float] | None = None
) -> Path:
    """A vigil.toml whose only classifier is the brightness model at ``model`` (label
    ``bright``), with ``[policy.labels.bright]`` set to ``thresholds`` when given."""
    lines = [
        "[classifiers]",
        "opennsfw = false",
        "face_age = false",
        "",
        "[[classifiers.custom]]",
        'name = "brightness"',
        f"path = {json.dumps(str(model))}",
        'labels = ["bright"]',
        "mean = [0, 0, 0]",
        "std = [1, 1, 1]",
    ]
    if thresholds:
        lines += ["", "[policy.labels.bright]"]
        lines += [f"{kind} = {value}" for kind, value in thresholds.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def uniform_png(level: int, size: tuple[int, int] = (32, 32)) -> bytes:
    """A flat grey PNG: the brightness model scores it ``level / 255``."""
    return encode(Image.new("RGB", size, (level, level, level)), "PNG")


def write_images(folder: Path, levels: Sequence[int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for level in levels:
        path = folder / f"grey-{level:03d}.png"
        path.write_bytes(uniform_png(level))
        paths.append(path)
    return paths


@pytest.fixture
def make_brightness_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings with the brightness model (its own file: loaded models are cached per process
    by their settings) and the given thresholds for ``bright``."""

    def build(**thresholds: float) -> Settings:
        model = brightness_model(tmp_path / "models" / "brightness.onnx")
        config = write_brightness_config(tmp_path / "vigil.toml", model, thresholds)
        return load_settings(data_dir=tmp_path / "data", config=config)

    return build


def point_at(report: LabelReport, threshold: float) -> Point:
    [point] = [point for point in report.points if point.threshold == pytest.approx(threshold)]
    return point


def false_positive_rate(scores: Sequence[float], threshold: float) -> float:
    return sum(score >= threshold for score in scores) / len(scores)


# --- threshold_for -------------------------------------------------------------------------------


def test_hold_threshold_allows_one_false_positive_in_a_hundred() -> None:
    negatives = [index / 200 for index in range(98)] + [0.8123, 0.93]
    random.Random(1).shuffle(negatives)

    threshold = threshold_for(negatives, 0.01)

    # Just above the second-highest score, rounded up to 3 decimals: only 0.93 is flagged.
    assert threshold == 0.813
    assert false_positive_rate(negatives, threshold) == 0.01


def test_a_score_already_on_three_decimals_is_not_flagged_by_its_own_threshold() -> None:
    negatives = [0.1] * 98 + [0.8, 0.95]
    threshold = threshold_for(negatives, 0.01)
    assert threshold == 0.801
    assert false_positive_rate(negatives, threshold) == 0.01


@pytest.mark.parametrize(
    ("negatives", "expected"),
    [([0.2, 0.4567, 0.3], 0.457), ([0.2, 0.5, 0.3], 0.501), ([0.0, 0.0], 0.001)],
    ids=["between_decimals", "on_a_decimal", "all_zero"],
)
def test_zero_target_puts_the_threshold_just_above_the_highest_negative(
    negatives: list[float], expected: float
) -> None:
    threshold = threshold_for(negatives, 0.0)
    assert threshold == expected
    assert false_positive_rate(negatives, expected) == 0.0


def test_no_negatives_give_no_threshold() -> None:
    assert threshold_for([], 0.01) is None
    assert threshold_for([], 0.0) is None


def test_no_threshold_when_a_negative_at_one_must_not_be_flagged() -> None:
    assert threshold_for([0.2, 1.0, 0.1], 0.0) is None
    assert threshold_for([0.2] * 99 + [1.0], 0.001) is None
    # One false positive in a hundred is allowed, so the 1.0 may be flagged.
    assert threshold_for([0.2] * 99 + [1.0], 0.01) == 0.201


def test_a_target_that_allows_every_negative_flags_everything() -> None:
    assert threshold_for([0.3, 0.9], 1.0) == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_suggested_threshold_is_the_lowest_that_keeps_the_target(seed: int) -> None:
    generator = random.Random(seed)
    for _ in range(50):
        size = generator.randint(1, 400)
        # Half the sets on a 3-decimal grid with ties: the boundary cases of the rounding.
        if generator.random() < 0.5:
            negatives = [round(generator.random(), 3) for _ in range(size)]
        else:
            negatives = [generator.random() ** 3 for _ in range(size)]
        target = generator.choice([0.0, 0.001, 0.005, 0.01, 0.05, 0.2])

        threshold = threshold_for(negatives, target)

        if threshold is None:  # only when even 1.0 flags too many
            assert false_positive_rate(negatives, 1.0) > target
            continue
        assert threshold == round(threshold, 3)
        assert 0.0 <= threshold <= 1.0
        assert false_positive_rate(negatives, threshold) <= target
        if threshold > 0.0:
            lower = round(threshold - 0.001, 3)
            assert false_positive_rate(negatives, lower) > target, (negatives, target)


# --- scoring folders and reporting labels --------------------------------------------------------


def test_suggested_hold_separates_dark_ok_images_from_bright_ones(
    tmp_path: Path, make_brightness_settings: Callable[..., Settings]
) -> None:
    settings = make_brightness_settings(hold=0.7, block=0.99)
    root = tmp_path / "labelled"
    write_images(root / "ok", DARK)
    write_images(root / "bright", BRIGHT)

    scored = score_folders(settings, root)

    assert sorted(scored) == ["bright", "ok"]
    assert sorted(scores["bright"] for scores in scored["ok"].scores) == pytest.approx(
        [level / 255 for level in DARK], abs=1e-3
    )
    assert sorted(scores["bright"] for scores in scored["bright"].scores) == pytest.approx(
        [level / 255 for level in BRIGHT], abs=1e-3
    )
    assert scored["ok"].skipped == []

    [report] = report_labels(settings, scored, ["bright"])
    assert report.label == "bright"
    assert (report.negatives, report.positives) == (5, {"bright": 3})
    # Five ok images: neither 1 % nor 0.1 % allows one of them, so both sit just above 130/255.
    assert report.suggested_hold == report.suggested_block == 0.51
    assert max(DARK) / 255 < report.suggested_hold <= min(BRIGHT) / 255
    suggested = point_at(report, 0.51)
    assert suggested.false_positive_rate == 0.0
    assert suggested.recall == {"bright": 1.0}
    assert suggested.precision == 1.0
    assert (report.configured_hold, report.configured_block) == (0.7, 0.99)
    nothing_flagged = point_at(report, 0.99)
    assert nothing_flagged.recall == {"bright": 0.0}
    assert nothing_flagged.precision is None


def test_report_at_each_threshold_matches_a_count_by_hand(
    tmp_path: Path, make_brightness_settings: Callable[..., Settings]
) -> None:
    settings = make_brightness_settings(hold=0.62, block=0.97)
    root = tmp_path / "labelled"
    write_images(root / "ok", [26, 89, 140, 161])  # 0.102 0.349 0.549 0.631
    write_images(root / "bright", [115, 191, 241])  # 0.451 0.749 0.945
    write_images(root / "glare", [250])  # 0.980

    [report] = report_labels(settings, score_folders(settings, root), ["bright"])

    assert report.positives == {"bright": 3, "glare": 1}
    assert (report.suggested_hold, report.suggested_block) == (0.632, 0.632)
    # The grid, the configured thresholds (off the grid) and the suggestion: each once.
    assert [point.threshold for point in report.points] == sorted({*GRID, 0.62, 0.632, 0.97})
    expected = {
        # threshold: (false-positive rate, recall per folder, precision over both folders)
        0.4: (2 / 4, {"bright": 3 / 3, "glare": 1.0}, 4 / 6),
        0.5: (2 / 4, {"bright": 2 / 3, "glare": 1.0}, 3 / 5),
        0.62: (1 / 4, {"bright": 2 / 3, "glare": 1.0}, 3 / 4),
        0.632: (0 / 4, {"bright": 2 / 3, "glare": 1.0}, 3 / 3),
        0.8: (0 / 4, {"bright": 1 / 3, "glare": 1.0}, 2 / 2),
        0.97: (0 / 4, {"bright": 0 / 3, "glare": 1.0}, 1 / 1),
    }
    for threshold, (fpr, recall, precision) in expected.items():
        point = point_at(report, threshold)
        assert point.false_positive_rate == pytest.approx(fpr), threshold
        assert point.recall == pytest.approx(recall), threshold
        assert point.precision == pytest.approx(precision), threshold

    document = report.as_dict()
    assert document["suggested"] == {"hold": 0.632, "block": 0.632}
    assert document["configured"] == {"hold": 0.62, "block": 0.97}
    assert json.loads(json.dumps(document)) == document  # what --json prints


def test_more_ok_images_let_hold_and_block_differ(
    tmp_path: Path, make_brightness_settings: Callable[..., Settings]
) -> None:
    settings = make_brightness_settings()
    root = tmp_path / "labelled"
    write_images(root / "ok", [*range(0, 99), 150])  # 100 images; the brightest 0.588
    write_images(root / "bright", BRIGHT)

    [report] = report_labels(settings, score_folders(settings, root), ["bright"])

    assert report.negatives == 100
    assert report.suggested_hold == 0.385  # one false positive allowed: just above 98/255
    assert report.suggested_block == 0.589  # none allowed: just above 150/255
    assert point_at(report, 0.385).false_positive_rate == 0.01
    assert point_at(report, 0.589).false_positive_rate == 0.0
    assert (report.configured_hold, report.configured_block) == (None, None)


def test_a_score_exactly_at_a_threshold_counts_as_flagged(tmp_path: Path) -> None:
    # As the policy does (a score at ``hold`` holds), and with exact scores, not a model's.
    settings = load_settings(
        data_dir=tmp_path / "data", policy={"labels": {"bright": {"hold": 0.7}}}
    )
    scored = {
        "ok": ScoredFolder("ok", scores=[{"bright": 0.5}, {"bright": 0.2}, {}]),
        "bright": ScoredFolder("bright", scores=[{"bright": 0.7}, {"bright": 0.3}]),
    }

    [report] = report_labels(settings, scored, ["bright"])

    at_hold = point_at(report, 0.7)
    assert at_hold.recall == {"bright": 0.5}
    assert at_hold.precision == 1.0
    at_half = point_at(report, 0.5)
    assert at_half.false_positive_rate == pytest.approx(1 / 3)  # an image without the label: 0
    assert at_half.precision == 0.5
    assert report.suggested_hold == 0.501


def test_labels_no_loaded_model_gives_are_left_out(
    tmp_path: Path, make_brightness_settings: Callable[..., Settings]
) -> None:
    settings = make_brightness_settings(hold=0.7)
    root = tmp_path / "labelled"
    write_images(root / "ok", DARK[:2])
    write_images(root / "bright", BRIGHT[:1])
    scored = score_folders(settings, root)

    reports = report_labels(settings, scored, ["nsfw", "bright", "gore"])
    assert [report.label for report in reports] == ["bright"]
    assert report_labels(settings, scored, ["nsfw"]) == []


def test_default_labels_are_the_policy_labels_then_those_of_custom_models(tmp_path: Path) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text(
        "[[classifiers.custom]]\n"
        'name = "brightness"\npath = "/models/brightness.onnx"\nlabels = ["bright"]\n'
        "[[classifiers.custom]]\n"
        'name = "gore"\npath = "/models/gore.onnx"\nlabels = ["gore_free", "gore"]\n'
        "[policy.labels.nsfw]\nhold = 0.4\n"
        "[policy.labels.bright]\nhold = 0.7\n"
    )
    settings = load_settings(data_dir=tmp_path / "data", config=config)
    assert default_labels(settings) == ["nsfw", "bright", "gore_free", "gore"]


def test_default_labels_keep_the_built_in_thresholds_when_none_are_configured(
    tmp_path: Path,
) -> None:
    model = tmp_path / "brightness.onnx"  # never loaded: the labels come from the settings
    settings = load_settings(
        data_dir=tmp_path / "data", config=write_brightness_config(tmp_path / "vigil.toml", model)
    )
    labels = default_labels(settings)
    assert labels == [*settings.policy.labels, "bright"]
    assert {"nsfw", "female_genitalia_exposed", "buttocks_exposed"} <= set(labels)


# --- bad input -----------------------------------------------------------------------------------


def test_a_folder_without_ok_images_is_refused_naming_what_is_missing(
    tmp_path: Path, make_brightness_settings: Callable[..., Settings]
) -> None:
    settings = make_brightness_settings(hold=0.7)
    root = tmp_path / "labelled"
    write_images(root / "nudity", BRIGHT)
    write_images(root / "gore", BRIGHT)

    with pytest.raises(InvalidRequest) as refused:
        score_folders(settings, root)
    message = refused.value.message
    assert str(root) in message
    assert "'ok'" in message
    assert "found: gore, nudity" in message

    with pytest.raises(InvalidRequest, match="'safe'"):
        score_folders(settings, root, negative="safe")


def test_an_empty_folder_is_refused(
    tmp_path: Path, make_brightness_settings: Callable[..., Settings]
) -> None:
    root = tmp_path / "labelled"
    root.mkdir()
    with pytest.raises(InvalidRequest, match="no sub-folders"):
        score_folders(make_brightness_settings(), root)


def test_ok_images_alone_are_refused(
    tmp_path: Path, make_brightness_settings: Callable[..., Settings]
) -> None:
    root = tmp_path / "labelled"
    write_images(root / "ok", DARK)
    (root / "readme.txt").write_text("files beside the sub-folders are not a folder of images\n")
    with pytest.raises(InvalidRequest, match="at least one sub-folder besides 'ok'"):
        score_folders(make_brightness_settings(), root)


def test_files_that_are_not_images_are_skipped_with_the_reason(
    tmp_path: Path, make_brightness_settings: Callable[..., Settings]
) -> None:
    settings = make_brightness_settings(hold=0.7)
    root = tmp_path / "labelled"
    write_images(root / "ok", DARK)
    notes = root / "ok" / "notes.txt"
    notes.write_text("not a picture\n")
    whole = encode(Image.new("RGB", (64, 64), (200, 200, 200)), "JPEG", quality=90)
    truncated = root / "bright" / "cut-short.jpg"
    write_images(root / "bright", BRIGHT)
    truncated.write_bytes(whole[: len(whole) // 2])
    totals: list[int] = []
    seen: list[None] = []

    scored = score_folders(
        settings, root, on_start=totals.append, on_image=lambda: seen.append(None)
    )

    assert totals == [len(DARK) + len(BRIGHT) + 2]
    assert len(seen) == totals[0]  # skipped files count as done too
    assert len(scored["ok"].scores) == len(DARK)
    assert len(scored["bright"].scores) == len(BRIGHT)
    [(ok_path, ok_reason)] = scored["ok"].skipped
    assert ok_path == notes.resolve()
    assert "unsupported file type" in ok_reason
    [(bright_path, bright_reason)] = scored["bright"].skipped
    assert bright_path == truncated.resolve()
    assert "truncated" in bright_reason

    [report] = report_labels(settings, scored, ["bright"])
    assert (report.negatives, report.positives) == (len(DARK), {"bright": len(BRIGHT)})


@pytest.mark.parametrize(
    ("build", "explanation"),
    [
        (corrupt_model, "not a model onnxruntime can load"),
        (failing_model, "failed its trial run"),
        (None, "cannot be read"),
    ],
    ids=["corrupt", "fails_to_run", "missing"],
)
def test_a_model_that_cannot_load_is_refused_naming_it(
    tmp_path: Path, build: Callable[[Path], Path] | None, explanation: str
) -> None:
    model = tmp_path / "models" / "broken.onnx"
    if build is not None:
        build(model)
    config = write_brightness_config(tmp_path / "vigil.toml", model, {"hold": 0.7})
    settings = load_settings(data_dir=tmp_path / "data", config=config)
    root = tmp_path / "labelled"
    write_images(root / "ok", DARK[:1])
    write_images(root / "bright", BRIGHT[:1])

    with pytest.raises(InvalidRequest) as refused:
        score_folders(settings, root)
    assert "model brightness is not loaded" in refused.value.message
    assert explanation in refused.value.message
