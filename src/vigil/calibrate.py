"""Tune the classifier thresholds on a site's own images.

The folder holds one sub-folder per kind of image: ``ok/`` for images that must be allowed, and
any others (``nudity/``, ``gore/``...) for images that should be caught. Every model is run on
every image (the second pass too), then for each label the tool reports, at a range of
thresholds, how many ``ok`` images would be flagged (the false-positive rate) and how many of
each other folder would be (recall), and suggests the lowest thresholds that keep the false
positives within a target: lowest, because that catches the most.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.config import Settings
from vigil.errors import IntakeError, InvalidRequest
from vigil.intake import open_image, read_limited
from vigil.scan import find_files
from vigil.signals.classifiers import ClassifierSuite

GRID = tuple(round(step / 10, 1) for step in range(1, 10))
# Calibration measures the models, not the server's latency budget.
_CALIBRATION_BUDGET_SECONDS = 120.0


@dataclass
class ScoredFolder:
    name: str
    scores: list[dict[str, float]] = field(default_factory=list)  # one per image
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # and why


@dataclass(frozen=True)
class Point:
    threshold: float
    false_positive_rate: float
    recall: dict[str, float]  # per positive folder
    precision: float | None  # over every positive folder together; None if nothing flagged

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "false_positive_rate": self.false_positive_rate,
            "recall": self.recall,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class LabelReport:
    label: str
    negatives: int
    positives: dict[str, int]
    points: tuple[Point, ...]  # the grid, the configured thresholds and the suggestions
    suggested_hold: float | None
    suggested_block: float | None
    configured_hold: float | None
    configured_block: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "negatives": self.negatives,
            "positives": self.positives,
            "suggested": {"hold": self.suggested_hold, "block": self.suggested_block},
            "configured": {"hold": self.configured_hold, "block": self.configured_block},
            "points": [point.as_dict() for point in self.points],
        }


def score_folders(
    settings: Settings,
    root: Path,
    *,
    negative: str = "ok",
    on_start: Callable[[int], None] | None = None,
    on_image: Callable[[], None] | None = None,
) -> dict[str, ScoredFolder]:
    """Run every model on every image under each sub-folder of ``root``."""
    folders = sorted(path for path in root.iterdir() if path.is_dir())
    names = [folder.name for folder in folders]
    if negative not in names:
        raise InvalidRequest(
            f"{root} needs a sub-folder {negative!r} of images that must be allowed "
            f"(found: {', '.join(names) or 'no sub-folders'})"
        )
    if len(folders) < 2:
        raise InvalidRequest(
            f"{root} needs at least one sub-folder besides {negative!r}, of images to catch"
        )
    budget = max(settings.classifiers.budget_seconds, _CALIBRATION_BUDGET_SECONDS)
    calibrating = settings.model_copy(
        update={"classifiers": settings.classifiers.model_copy(update={"budget_seconds": budget})}
    )
    suite = ClassifierSuite.from_settings(calibrating)
    try:
        unavailable = [status for status in suite.load(log_failures=False) if not status.loaded]
        if unavailable:
            raise InvalidRequest(
                "; ".join(
                    f"model {status.name} is not loaded: {status.error}" for status in unavailable
                )
            )
        files = {folder.name: find_files([folder]) for folder in folders}
        if on_start is not None:
            on_start(sum(len(found) for found in files.values()))
        scored = {}
        for name, found in files.items():
            scored[name] = _score(settings, suite, name, found, on_image)
        return scored
    finally:
        suite.close()


def _score(
    settings: Settings,
    suite: ClassifierSuite,
    name: str,
    files: Iterable[Path],
    on_image: Callable[[], None] | None,
) -> ScoredFolder:
    folder = ScoredFolder(name)
    for path in files:
        try:
            with path.open("rb") as handle:
                image = open_image(read_limited(handle, settings.intake.max_bytes), settings.intake)
            sample = suite.sample(image.frames_to_screen)
            frames = [frame for frame in image.frames() if frame.index in sample]
        except (IntakeError, OSError) as error:
            folder.skipped.append((path, getattr(error, "message", None) or str(error)))
        else:
            report = suite.classify(frames, every_model=True)
            if report.failures:
                reasons = "; ".join(f"{f.model}: {f.message}" for f in report.failures)
                folder.skipped.append((path, reasons))
            else:
                scores: dict[str, float] = {}
                for result in report.results:
                    for label, score in result.scores.items():
                        scores[label] = max(score, scores.get(label, 0.0))
                folder.scores.append(scores)
        if on_image is not None:
            on_image()
    return folder


def default_labels(settings: Settings, *, negative: str = "ok") -> list[str]:
    """The labels a site tunes: those with thresholds, and those of its own models (but not
    one named like the folder of good images: a model's own "ok" output needs no threshold)."""
    labels = list(settings.policy.labels)
    for model in settings.classifiers.custom:
        labels.extend(label for label in model.labels if label not in labels)
    return [label for label in labels if label != negative]


def report_labels(
    settings: Settings,
    scored: dict[str, ScoredFolder],
    labels: Sequence[str],
    *,
    negative: str = "ok",
    target_fpr: float = 0.01,
    block_fpr: float = 0.001,
) -> list[LabelReport]:
    """Precision, recall and false-positive rate per label, with suggested thresholds."""
    negatives = scored[negative].scores
    positives = {name: folder.scores for name, folder in scored.items() if name != negative}
    reports = []
    for label in labels:
        if not any(label in scores for folder in scored.values() for scores in folder.scores):
            continue  # no loaded model gives this label
        negative_scores = [scores.get(label, 0.0) for scores in negatives]
        positive_scores = {
            name: [scores.get(label, 0.0) for scores in images]
            for name, images in positives.items()
        }
        hold = threshold_for(negative_scores, target_fpr)
        block = threshold_for(negative_scores, block_fpr)
        configured = settings.policy.labels.get(label)
        configured_hold = configured.hold if configured else None
        configured_block = configured.block if configured else None
        thresholds = set(GRID)
        for extra in (hold, block, configured_hold, configured_block):
            if extra is not None:
                thresholds.add(extra)
        points = tuple(
            _point(threshold, negative_scores, positive_scores) for threshold in sorted(thresholds)
        )
        reports.append(
            LabelReport(
                label=label,
                negatives=len(negative_scores),
                positives={name: len(values) for name, values in positive_scores.items()},
                points=points,
                suggested_hold=hold,
                suggested_block=block,
                configured_hold=configured_hold,
                configured_block=configured_block,
            )
        )
    return reports


def threshold_for(negative_scores: Sequence[float], target_fpr: float) -> float | None:
    """The lowest threshold (to 3 decimals) at which at most ``target_fpr`` of the negatives
    score at or above it; None without negatives or when even 1.0 would flag too many."""
    if not negative_scores:
        return None
    allowed = math.floor(target_fpr * len(negative_scores) + 1e-9)
    ranked = sorted(negative_scores, reverse=True)
    if allowed >= len(ranked):
        return 0.0
    # Just above the highest negative score that must not be flagged.
    threshold = math.floor(ranked[allowed] * 1000) / 1000 + 0.001
    if threshold > 1.0:
        return None
    return round(threshold, 3)


def _point(
    threshold: float, negatives: Sequence[float], positives: dict[str, list[float]]
) -> Point:
    false_positives = sum(score >= threshold for score in negatives)
    flagged = {
        name: sum(score >= threshold for score in values) for name, values in positives.items()
    }
    true_positives = sum(flagged.values())
    total_flagged = true_positives + false_positives
    return Point(
        threshold=threshold,
        false_positive_rate=false_positives / len(negatives) if negatives else 0.0,
        recall={
            name: flagged[name] / len(values) if values else 0.0
            for name, values in positives.items()
        },
        precision=true_positives / total_flagged if total_flagged else None,
    )
