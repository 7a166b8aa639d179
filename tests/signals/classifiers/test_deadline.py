"""An image's time budget: a run still going when it is cancelled is stopped, not waited for."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.onnx_models import constant_model, slow_model
from vigil.signals.classifiers import ClassifierTimeout, Deadline
from vigil.signals.classifiers.sessions import open_session

SHORT_STEPS = 8
LONG_STEPS = 160  # twenty times the short model's work: seconds of CPU


def one_image() -> dict[str, np.ndarray]:
    return {"image": np.zeros((1, 3, 8, 8), dtype=np.float32)}


def timed_run(session: ort.InferenceSession) -> float:
    started = time.perf_counter()
    session.run(None, one_image())
    return time.perf_counter() - started


def test_cancel_stops_a_run_in_progress(tmp_path: Path) -> None:
    short = open_session(slow_model(tmp_path / "short.onnx", SHORT_STEPS), threads=1)
    long = open_session(slow_model(tmp_path / "long.onnx", LONG_STEPS), threads=1)
    timed_run(short)  # the first run of a session pays for setting it up
    # The long model does the short one's work twenty times over.
    long_model_seconds = timed_run(short) * LONG_STEPS / SHORT_STEPS
    deadline = Deadline(0.05)
    canceller = threading.Timer(0.05, deadline.cancel)

    started = time.perf_counter()
    canceller.start()
    with pytest.raises(ClassifierTimeout):
        deadline.run(long, one_image())
    elapsed = time.perf_counter() - started
    canceller.join()

    assert deadline.cancelled
    assert elapsed < long_model_seconds / 2


def test_run_gives_every_output_within_the_budget(tmp_path: Path) -> None:
    session = open_session(constant_model(tmp_path / "constant.onnx", [0.25, 0.75]), threads=1)

    (scores,) = Deadline(10.0).run(session, one_image())

    assert scores.tolist() == [[0.25, 0.75]]


def test_run_refuses_to_start_once_cancelled(tmp_path: Path) -> None:
    session = open_session(constant_model(tmp_path / "constant.onnx", [0.5]), threads=1)
    deadline = Deadline(10.0)
    deadline.cancel()

    with pytest.raises(ClassifierTimeout):
        deadline.run(session, one_image())


def test_run_refuses_to_start_once_expired(tmp_path: Path) -> None:
    session = open_session(constant_model(tmp_path / "constant.onnx", [0.5]), threads=1)
    deadline = Deadline(0.01)
    time.sleep(0.02)

    with pytest.raises(ClassifierTimeout):
        deadline.run(session, one_image())


def test_model_errors_are_not_mistaken_for_timeouts(tmp_path: Path) -> None:
    session = open_session(constant_model(tmp_path / "constant.onnx", [0.5]), threads=1)
    wrong_rank = {"image": np.zeros((8, 8), dtype=np.float32)}

    with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever onnxruntime raises
        Deadline(10.0).run(session, wrong_rank)

    assert not isinstance(raised.value, ClassifierTimeout)


def test_check_passes_within_the_budget_and_raises_after_it() -> None:
    deadline = Deadline(0.05)
    deadline.check()
    assert 0.0 < deadline.remaining() <= 0.05

    time.sleep(0.06)

    assert deadline.remaining() == 0.0
    with pytest.raises(ClassifierTimeout, match="budget"):
        deadline.check()


def test_check_raises_once_cancelled() -> None:
    deadline = Deadline(60.0)
    deadline.cancel()

    assert deadline.cancelled
    with pytest.raises(ClassifierTimeout):
        deadline.check()
