"""Gather as real models run it (embedding rows, negative indices, rows split across threads), vs NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import hamr
from tests.helpers import DEVICES

RNG = np.random.default_rng(8)
CASES = [
    ((3000, 384), (1, 128), 0),  # MiniLM's word embeddings
    ((5, 7, 9), (4,), 1),
    ((6, 11), (2, 3), -1),  # rows of one element
    ((2, 50, 401), (3, 2), 1),  # above the parallel threshold, rows cut by the thread split
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, idx_shape, axis", CASES)
def test_gather_matches_numpy(device, shape, idx_shape, axis):
    x = RNG.standard_normal(shape).astype(np.float32)
    k = shape[axis]
    idx = RNG.integers(-k, k, size=idx_shape).astype(np.int64)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)],
        "gather",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape)),
            helper.make_tensor_value_info("i", TensorProto.INT64, list(idx_shape)),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    target = "cpu" if device == "cpu" else "opencl"
    exe = hamr.compile(model, targets=[target])
    assert exe.variants[target]["fallback"] == {}
    got = hamr.Session(exe, device=device).run({"x": x, "i": idx})["y"]
    np.testing.assert_array_equal(got, np.take(x, idx, axis=axis))
