"""RMSNormalization and CumProd run natively on cpu and opencl and match onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from tests.helpers import DEVICES, one_node_model, run_natively

RNG = np.random.default_rng(13)
F = TensorProto.FLOAT


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("axis", "scale_shape"), [(-1, [8]), (1, [5, 8]), (1, [1, 8]), (0, [])])
def test_rms_normalization_over_trailing_axes(axis, scale_shape, device):
    x = RNG.standard_normal((3, 5, 8)).astype(np.float32) * 4
    scale = numpy_helper.from_array(RNG.standard_normal(scale_shape).astype(np.float32), "s")
    model = one_node_model(
        "RMSNormalization",
        [("x", (F, ["b", 5, 8])), ("s", None)],
        {"y": (F, ["b", 5, 8])},
        [scale],
        opset=23,
        axis=axis,
        epsilon=1e-3,
    )
    got, want = run_natively(model, {"x": x}, device)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("exclusive", "reverse"), [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumprod_along_a_runtime_axis(exclusive, reverse, device):
    x = RNG.uniform(0.5, 1.5, (3, 4, 5)).astype(np.float32)
    model = one_node_model(
        "CumProd",
        [("x", (F, [3, 4, 5])), ("axis", (TensorProto.INT64, []))],
        {"y": (F, [3, 4, 5])},
        opset=26,
        exclusive=exclusive,
        reverse=reverse,
    )
    for axis in (1, -1):
        got, want = run_natively(model, {"x": x, "axis": np.array(axis, np.int64)}, device)
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_cumprod_of_integers_is_exact(device):
    x = RNG.integers(-3, 4, (2, 6)).astype(np.int64)
    axis = numpy_helper.from_array(np.array(1, np.int32), "axis")
    model = one_node_model(
        "CumProd",
        [("x", (TensorProto.INT64, [2, 6])), ("axis", None)],
        {"y": (TensorProto.INT64, [2, 6])},
        [axis],
        opset=26,
    )
    got, want = run_natively(model, {"x": x}, device)
    np.testing.assert_array_equal(got["y"], want["y"])
