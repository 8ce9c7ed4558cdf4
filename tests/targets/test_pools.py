"""Pools at the sizes real models run them (rows split across threads, spatial sizes not a multiple of the
vector lanes), natively against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from tests.helpers import DEVICES, one_node_model, run_natively

RNG = np.random.default_rng(5)
F = TensorProto.FLOAT
GLOBAL = {"GlobalMaxPool": np.max, "GlobalAveragePool": np.mean}

POOLS = [
    ("MaxPool", (1, 64, 112, 112), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),  # ResNet's stem
    ("MaxPool", (2, 3, 33, 29), dict(kernel_shape=[2, 3], strides=[1, 2], ceil_mode=1)),
    ("AveragePool", (1, 32, 57, 41), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", (2, 5, 30, 31), dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("LpPool", (1, 8, 40, 41), dict(kernel_shape=[3, 2], p=2)),
    ("MaxPool", (2, 6, 301), dict(kernel_shape=[4], strides=[3])),
    ("GlobalMaxPool", (1, 512, 508), {}),  # magika
    ("GlobalAveragePool", (1, 96, 80, 80), {}),  # PP-OCR det's squeeze-excite
    ("GlobalAveragePool", (2, 3, 7, 5), {}),  # fewer elements than lanes
    ("GlobalMaxPool", (3, 4, 45, 47), {}),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, shape, attrs", POOLS, ids=[f"{op}-{'x'.join(map(str, s))}" for op, s, _ in POOLS])
def test_pools_match_reference(device, op, shape, attrs):
    x = RNG.standard_normal(shape).astype(np.float32)
    model = one_node_model(op, [("x", (F, shape))], {"y": (F, None)}, opset=18, **attrs)
    got, want = run_natively(model, {"x": x}, device)
    if op in GLOBAL:  # onnx.reference's GlobalMaxPool drops the channel axis (hamr overrides it for fallbacks)
        want["y"] = GLOBAL[op](x, axis=tuple(range(2, x.ndim)), keepdims=True)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)
