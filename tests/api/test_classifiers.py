"""Classifiers through POST /v1/screen: real ONNX models (tiny ones the tests build, and the
built-in ones), on both databases.

A custom model whose label is ``nsfw`` plays the sexual classifier; a second-pass one whose
label is ``apparent_minor`` plays the face-age model. Each test builds its models in its own
folder, since loaded models are shared in a process by their settings.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import add_hashes, create_bank, screen, site_key
from tests.images import encode, make_photo
from tests.onnx_models import constant_model, corrupt_model, failing_model, slow_model
from vigil.api import create_app
from vigil.config import Settings
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.signals.classifiers import suite
from vigil.store.sites import Role

POLICY = {
    "labels": {"nsfw": {"hold": 0.4, "block": 0.9}},
    "minor_risk": {"sexual_labels": ["nsfw"], "suspect_at": 0.2, "apparent_minor_at": 0.5},
}


@dataclass
class RunningVigil:
    client: TestClient
    headers: dict[str, str]
    runtime: Runtime

    def screen(self, image: bytes) -> dict[str, Any]:
        response = screen(self.client, self.headers, image)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def start_vigil(
    make_settings: Callable[..., Settings], make_runtime: Callable[[Settings], Runtime]
) -> Iterator[Callable[..., RunningVigil]]:
    """Starts the app (its lifespan loads the models) with these settings overrides."""
    with ExitStack() as running:

        def start(**overrides: Any) -> RunningVigil:
            runtime = make_runtime(make_settings(**overrides))
            headers = {"Authorization": f"Bearer {ensure_bootstrap_key(runtime.database)}"}
            client = TestClient(create_app(runtime), raise_server_exceptions=False)
            running.enter_context(client)
            return RunningVigil(client, headers, runtime)

        yield start


def _custom(name: str, path: Path, labels: list[str], **options: Any) -> dict[str, Any]:
    """A custom model taking raw 0-1 pixels (no mean or std), as the tiny models expect."""
    return {
        "name": name,
        "path": str(path),
        "labels": labels,
        "mean": [0, 0, 0],
        "std": [1, 1, 1],
        **options,
    }


def _only(*models: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Classifier settings with just these custom models, none of the built-in ones."""
    return {"opennsfw": False, "face_age": False, "custom": list(models), **options}


def _photo(seed: int) -> bytes:
    return encode(make_photo(seed=seed), "JPEG")


def _by_model(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["model"]: entry for entry in body["classifications"]}


def _codes(body: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in body["reasons"]]


def _metric(text: str, sample: str, **labels: str) -> float | None:
    """The value of one sample in a /metrics page, or None if it is not there."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return None


def failing_on_real_images_model(path: Path) -> Path:
    """Passes the trial run on a blank (black) image, then fails in onnxruntime on any image
    with a lit pixel: it reads an element past the end of its data."""
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["mean4"], keepdims=1),
        helper.make_node("Reshape", ["mean4", "batch_by_one"], ["mean"]),
        helper.make_node("ReduceMax", ["mean"], ["brightest"], keepdims=0),
        helper.make_node("Greater", ["brightest", "zero"], ["lit"]),
        helper.make_node("Cast", ["lit"], ["lit_number"], to=TensorProto.INT64),
        helper.make_node("Mul", ["lit_number", "past_the_end"], ["index"]),
        helper.make_node("Gather", ["mean", "index"], ["scores"], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "batch_by_one"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array([5], dtype=np.int64), "past_the_end"),
    ]
    graph = helper.make_graph(
        nodes,
        "fails-on-real-images",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("score", "decision", "review", "priority"),
    [
        (0.6, "hold", "pending", "normal"),
        (0.95, "block", "pending", "high"),
        (0.1, "allow", "none", "normal"),
    ],
    ids=["above_hold", "above_block", "below_hold"],
)
def test_a_models_score_decides_against_the_labels_thresholds(
    start_vigil: Callable[..., RunningVigil],
    tmp_path: Path,
    score: float,
    decision: str,
    review: str,
    priority: str,
) -> None:
    model = constant_model(tmp_path / "models" / "sexual.onnx", [score])
    vigil = start_vigil(
        classifiers=_only(_custom("sexual", model, ["nsfw"], version="test-1")), policy=POLICY
    )

    body = vigil.screen(_photo(seed=1))

    assert (body["decision"], body["review"], body["priority"]) == (decision, review, priority)
    assert body["flags"] == []
    (result,) = body["classifications"]
    assert (result["model"], result["version"], result["views"]) == ("sexual", "test-1", 1)
    assert result["scores"] == {"nsfw": pytest.approx(score)}
    if decision == "allow":
        assert body["reasons"] == []
    else:
        (reason,) = body["reasons"]
        assert reason["code"] == "classifier_label"
        assert (reason["label"], reason["model"], reason["model_version"]) == (
            "nsfw",
            "sexual",
            "test-1",
        )
        assert reason["threshold"] == (0.9 if decision == "block" else 0.4)


def test_a_submission_shows_what_the_models_said(
    start_vigil: Callable[..., RunningVigil], tmp_path: Path
) -> None:
    model = constant_model(tmp_path / "models" / "sexual.onnx", [0.6])
    vigil = start_vigil(classifiers=_only(_custom("sexual", model, ["nsfw"])), policy=POLICY)

    screened = vigil.screen(_photo(seed=2))
    stored = vigil.client.get(
        f"/v1/submissions/{screened['submission_id']}", headers=vigil.headers
    ).json()

    assert screened["decision"] == "hold"
    (result,) = screened["classifications"]
    assert result["version"] == hashlib.sha256(model.read_bytes()).hexdigest()[:12], (
        "without a configured version, a custom model is known by its file's digest"
    )
    assert stored["classifications"] == screened["classifications"]
    assert stored["reasons"] == screened["reasons"]
    assert (stored["decision"], stored["review"], stored["priority"]) == (
        "hold",
        "pending",
        "normal",
    )


def test_the_face_model_runs_only_on_images_the_first_pass_finds_sexual(
    start_vigil: Callable[..., RunningVigil], tmp_path: Path
) -> None:
    """And with nothing sexual found, a face that may be a minor's changes nothing."""
    sexual = constant_model(tmp_path / "models" / "sexual.onnx", [0.1])
    age = constant_model(tmp_path / "models" / "age.onnx", [1.0])
    vigil = start_vigil(
        classifiers=_only(
            _custom("sexual", sexual, ["nsfw"]),
            _custom("age", age, ["apparent_minor"], second_pass=True),
        ),
        policy=POLICY,
    )

    body = vigil.screen(_photo(seed=3))

    assert body["decision"] == "allow"
    assert list(_by_model(body)) == ["sexual"]


def test_sexual_content_with_a_possible_minor_goes_to_the_urgent_child_safety_queue(
    start_vigil: Callable[..., RunningVigil], tmp_path: Path
) -> None:
    sexual = constant_model(tmp_path / "models" / "sexual.onnx", [0.5])
    age = constant_model(tmp_path / "models" / "age.onnx", [0.9])
    vigil = start_vigil(
        classifiers=_only(
            _custom("sexual", sexual, ["nsfw"]),
            _custom("age", age, ["apparent_minor"], second_pass=True),
        ),
        policy=POLICY,
    )
    _, moderator = site_key(vigil.runtime, "default", Role.MODERATOR)

    body = vigil.screen(_photo(seed=4))
    waiting = _metric(vigil.client.get("/metrics").text, "vigil_review_pending", priority="urgent")
    decided = vigil.client.post(
        f"/v1/submissions/{body['submission_id']}/decision",
        headers=moderator,
        json={"decision": "block", "note": "reported"},
    )
    left = _metric(vigil.client.get("/metrics").text, "vigil_review_pending", priority="urgent")

    assert (body["decision"], body["review"], body["priority"]) == ("block", "pending", "urgent")
    assert body["flags"] == ["child_safety"]
    minor_risk = next(reason for reason in body["reasons"] if reason["code"] == "minor_risk")
    assert (minor_risk["verdict"], minor_risk["face_model"]) == ("block", "age")
    assert minor_risk["apparent_minor"] == pytest.approx(0.9)
    assert set(_by_model(body)) == {"sexual", "age"}
    assert (waiting, left) == (1.0, 0.0)
    assert decided.status_code == 200, decided.text
    after = decided.json()
    assert (after["decision"], after["review"], after["decision_note"]) == (
        "block",
        "decided",
        "reported",
    )
    assert (after["priority"], after["flags"]) == ("urgent", ["child_safety"])


def test_a_model_that_fails_on_an_image_holds_it_and_the_others_still_count(
    start_vigil: Callable[..., RunningVigil], tmp_path: Path
) -> None:
    sexual = constant_model(tmp_path / "models" / "sexual.onnx", [0.1])
    broken = failing_on_real_images_model(tmp_path / "models" / "broken.onnx")
    age = constant_model(tmp_path / "models" / "age.onnx", [0.0])
    vigil = start_vigil(
        classifiers=_only(
            _custom("sexual", sexual, ["nsfw"]),
            _custom("broken", broken, ["gore"]),
            _custom("age", age, ["apparent_minor"], second_pass=True),
        ),
        policy=POLICY,
    )

    body = vigil.screen(_photo(seed=5))

    assert (body["decision"], body["review"]) == ("hold", "pending")
    assert _codes(body) == ["classifier_error"]
    assert body["reasons"][0]["model"] == "broken"
    results = _by_model(body)
    assert results["broken"]["failure"] == "error"
    assert "out of data bounds" in results["broken"]["message"]
    assert results["sexual"]["scores"] == {"nsfw": pytest.approx(0.1)}
    assert "age" in results, "a first pass that could not say runs the second pass"


def test_a_model_over_the_time_budget_holds_the_image(
    start_vigil: Callable[..., RunningVigil], tmp_path: Path
) -> None:
    sexual = constant_model(tmp_path / "models" / "sexual.onnx", [0.1])
    # About a second of CPU: a short trial run at start-up, but five times the budget.
    slow = slow_model(tmp_path / "models" / "slow.onnx", multiplications=60)
    age = constant_model(tmp_path / "models" / "age.onnx", [0.0])
    vigil = start_vigil(
        classifiers=_only(
            _custom("sexual", sexual, ["nsfw"]),
            _custom("slow", slow, ["gore"]),
            _custom("age", age, ["apparent_minor"], second_pass=True),
            budget_seconds=0.2,
        ),
        policy=POLICY,
    )

    body = vigil.screen(_photo(seed=6))

    assert (body["decision"], body["review"]) == ("hold", "pending")
    assert {reason["code"] for reason in body["reasons"]} == {"classifier_timeout"}
    results = _by_model(body)
    assert "scores" in results["sexual"], "the model that finished in time is recorded"
    assert results["slow"]["failure"] == "timeout"
    # Whether the second pass was needed was never settled, so it counts as not done in time.
    assert results["age"]["failure"] == "timeout"
    assert {reason["model"] for reason in body["reasons"]} == {"slow", "age"}


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (corrupt_model, "is not a model onnxruntime can load"),
        (lambda path: path, "cannot be read"),
        (failing_model, "failed its trial run"),
    ],
    ids=["corrupt_file", "missing_file", "fails_its_trial_run"],
)
def test_a_model_that_cannot_load_leaves_the_app_up_but_not_ready_and_holds_images(
    start_vigil: Callable[..., RunningVigil],
    tmp_path: Path,
    build: Callable[[Path], Path],
    error: str,
) -> None:
    sexual = constant_model(tmp_path / "models" / "sexual.onnx", [0.1])
    broken = build(tmp_path / "models" / "broken.onnx")
    vigil = start_vigil(
        classifiers=_only(_custom("sexual", sexual, ["nsfw"]), _custom("broken", broken, ["x"])),
        policy=POLICY,
    )

    alive = vigil.client.get("/healthz")
    ready = vigil.client.get("/readyz")
    body = vigil.screen(_photo(seed=7))

    assert alive.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["error"] == "models not loaded: broken"
    status = ready.json()["classifiers"]
    assert status["sexual"]["loaded"] is True
    assert status["broken"]["loaded"] is False
    assert error in status["broken"]["error"]
    assert (body["decision"], body["review"]) == ("hold", "pending")
    assert _codes(body) == ["classifier_unavailable"]
    assert body["reasons"][0]["model"] == "broken"
    assert _by_model(body)["broken"]["failure"] == "unavailable"


def test_nudenet_without_its_extra_is_reported_and_holds_images_it_should_see(
    start_vigil: Callable[..., RunningVigil],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "nudenet", None)  # as if the extra were not installed
    # Another test in this process may have loaded NudeNet; this one must try for itself.
    monkeypatch.setattr(suite, "_loaded", {})
    caplog.set_level(logging.ERROR, logger=suite.__name__)
    # Possibly sexual (at suspect_at, below hold), so the second pass, NudeNet's, must run.
    sexual = constant_model(tmp_path / "models" / "sexual.onnx", [0.3])
    vigil = start_vigil(
        classifiers=_only(_custom("sexual", sexual, ["nsfw"]), nudenet=True), policy=POLICY
    )

    ready = vigil.client.get("/readyz")
    body = vigil.screen(_photo(seed=8))

    logged = [record.getMessage() for record in caplog.records if "nudenet" in record.getMessage()]
    assert any("pip install 'vigil[nudenet]'" in message for message in logged), logged
    assert ready.status_code == 503
    assert ready.json()["classifiers"]["nudenet"]["loaded"] is False
    assert "vigil[nudenet]" in ready.json()["classifiers"]["nudenet"]["error"]
    assert body["decision"] == "hold"
    assert _codes(body) == ["classifier_unavailable"]
    assert body["reasons"][0]["model"] == "nudenet"
    assert "scores" in _by_model(body)["sexual"]


def test_the_built_in_models_load_and_allow_an_ordinary_photo(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    ready = client.get("/readyz")
    body = screen(client, admin_headers, _photo(seed=9)).json()

    assert ready.status_code == 200, ready.text
    status = ready.json()["classifiers"]
    assert set(status) == {"opennsfw", "face_age"}
    assert (status["opennsfw"]["loaded"], status["opennsfw"]["pass"]) == (True, 1)
    assert (status["face_age"]["loaded"], status["face_age"]["pass"]) == (True, 2)
    assert body["decision"] == "allow"
    opennsfw = _by_model(body)["opennsfw"]
    assert 0.0 <= opennsfw["scores"]["nsfw"] < 0.2
    assert opennsfw["version"] == status["opennsfw"]["version"]
    assert "face_age" not in _by_model(body), "nothing sexual: no second pass"


def test_an_image_a_block_bank_knows_is_blocked_without_asking_the_models(
    start_vigil: Callable[..., RunningVigil], tmp_path: Path
) -> None:
    model = constant_model(tmp_path / "models" / "sexual.onnx", [0.95])
    vigil = start_vigil(classifiers=_only(_custom("sexual", model, ["nsfw"])), policy=POLICY)
    known, unknown = _photo(seed=10), _photo(seed=11)
    create_bank(vigil.client, vigil.headers, "known", "sha256", "block")
    add_hashes(vigil.client, vigil.headers, "known", [hashlib.sha256(known).hexdigest()])

    blocked = vigil.screen(known)
    classified = vigil.screen(unknown)

    assert (blocked["decision"], blocked["review"]) == ("block", "none")
    assert _codes(blocked) == ["bank_match"]
    assert blocked["classifications"] == []
    assert (classified["decision"], classified["review"]) == ("block", "pending")
    assert list(_by_model(classified)) == ["sexual"]


def test_metrics_count_model_time_and_failures(
    start_vigil: Callable[..., RunningVigil], tmp_path: Path
) -> None:
    sexual = constant_model(tmp_path / "models" / "sexual.onnx", [0.1])
    broken = failing_on_real_images_model(tmp_path / "models" / "broken.onnx")
    vigil = start_vigil(
        classifiers=_only(_custom("sexual", sexual, ["nsfw"]), _custom("broken", broken, ["x"])),
        policy=POLICY,
    )

    vigil.screen(_photo(seed=12))
    vigil.screen(_photo(seed=13))
    text = vigil.client.get("/metrics").text

    assert _metric(text, "vigil_classifier_seconds_count", model="sexual") == 2.0
    assert _metric(text, "vigil_classifier_seconds_count", model="broken") is None
    assert _metric(text, "vigil_classifier_failures_total", model="broken", kind="error") == 2.0
    assert _metric(text, "vigil_classifier_failures_total", model="sexual", kind="error") is None
