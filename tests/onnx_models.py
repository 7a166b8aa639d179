"""Tiny ONNX image classifiers built by the tests themselves, whose outputs are known.

Each takes a float32 batch of images (NCHW, any size) and gives one score per label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_OPSET = [helper.make_opsetid("", 18)]


def _save(
    path: Path, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], labels: int
) -> Path:
    graph = helper.make_graph(
        nodes,
        "vigil-test-model",
        [
            helper.make_tensor_value_info(
                "image", TensorProto.FLOAT, ["batch", 3, "height", "width"]
            )
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", labels])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=_OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _mean_of_image() -> list[onnx.NodeProto]:
    """``mean``: the mean of each image's pixels, shape (batch, 1)."""
    return [
        helper.make_node("ReduceMean", ["image", "axes"], ["mean4"], keepdims=1),
        helper.make_node("Reshape", ["mean4", "batch_by_one"], ["mean"]),
    ]


def _mean_initializers() -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "batch_by_one"),
    ]


def constant_model(path: Path, scores: Sequence[float]) -> Path:
    """Gives ``scores`` for every image (the image is read, its values ignored)."""
    nodes = [
        *_mean_of_image(),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "constant"], ["scores"]),
    ]
    initializers = [
        *_mean_initializers(),
        numpy_helper.from_array(np.zeros((1, 1), dtype=np.float32), "zero"),
        numpy_helper.from_array(np.asarray([scores], dtype=np.float32), "constant"),
    ]
    return _save(path, nodes, initializers, len(scores))


def brightness_model(path: Path) -> Path:
    """One label: the image's mean input value (with scale 1/255 and no mean/std, its brightness
    in 0-1)."""
    nodes = [*_mean_of_image(), helper.make_node("Identity", ["mean"], ["scores"])]
    return _save(path, nodes, _mean_initializers(), 1)


def failing_model(path: Path) -> Path:
    """Loads and checks, but fails on every run: it reads an element that does not exist."""
    nodes = [
        *_mean_of_image(),
        helper.make_node("Gather", ["mean", "out_of_range"], ["scores"], axis=1),
    ]
    initializers = [
        *_mean_initializers(),
        numpy_helper.from_array(np.array([5], dtype=np.int64), "out_of_range"),
    ]
    return _save(path, nodes, initializers, 1)


def slow_model(path: Path, multiplications: int = 400, size: int = 1024) -> Path:
    """Gives 0.0, after ``multiplications`` products of ``size`` x ``size`` matrices that depend
    on the image (so onnxruntime cannot work them out in advance): seconds of CPU."""
    nodes = [
        *_mean_of_image(),
        helper.make_node("ReduceMean", ["mean"], ["scalar"], keepdims=1),  # (1, 1)
        helper.make_node("Mul", ["scalar", "ones"], ["matrix_0"]),
    ]
    for step in range(multiplications):
        nodes.append(
            helper.make_node("MatMul", [f"matrix_{step}", "weights"], [f"matrix_{step + 1}"])
        )
    nodes += [
        helper.make_node("ReduceMean", [f"matrix_{multiplications}"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Mul", ["mean", "zero"], ["per_image"]),
        helper.make_node("Add", ["per_image", "nothing"], ["scores"]),
    ]
    initializers = [
        *_mean_initializers(),
        numpy_helper.from_array(np.ones((size, size), dtype=np.float32), "ones"),
        numpy_helper.from_array(np.full((size, size), 1.0 / size, dtype=np.float32), "weights"),
        numpy_helper.from_array(np.zeros((1, 1), dtype=np.float32), "zero"),
    ]
    return _save(path, nodes, initializers, 1)


def corrupt_model(path: Path) -> Path:
    """A file that is not a model at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an ONNX model\\n" * 10)
    return path
