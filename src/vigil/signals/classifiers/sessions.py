"""onnxruntime sessions, built one way for every model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnxruntime as ort

from vigil.signals.classifiers.base import ModelUnavailable


def open_session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads, or :class:`ModelUnavailable` saying why."""
    if not path.is_file():
        raise ModelUnavailable(f"model file not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle inference threads would otherwise spin for a while after each image, taking CPU
    # from decoding and hashing in the same process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 4  # Vigil logs failures itself, once, with the model name
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own types for unreadable graphs
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelUnavailable(
            f"{path} is not a model onnxruntime can load: {first_line or type(error).__name__}"
        ) from error


def file_sha256(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        raise ModelUnavailable(f"model file cannot be read: {path}: {error.strerror}") from error
