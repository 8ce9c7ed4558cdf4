"""Fused elementwise maps as real models export them, natively against NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from tests.helpers import DEVICES

RNG = np.random.default_rng(13)


def run(nodes, feeds: dict, inits, device: str) -> dict:
    inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()]
    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes[-1:]]
    graph = helper.make_graph(nodes, "maps", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    target = "cpu" if device == "cpu" else "opencl"
    exe = hamr.compile(model, targets=[target])
    assert exe.variants[target]["fallback"] == {}
    return hamr.Session(exe, device=device).run(feeds)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("exponent", [2.0, 1.0, 3.0])
def test_pow_by_a_constant_matches_numpy(device, exponent):
    """LayerNorm's variance as exported: (x - mean)^2 with the exponent a constant."""
    x = RNG.standard_normal((1, 40, 120)).astype(np.float32)
    mean = x.mean(axis=-1, keepdims=True)
    nodes = [helper.make_node("Sub", ["x", "m"], ["d"]), helper.make_node("Pow", ["d", "e"], ["y"])]
    got = run(nodes, {"x": x, "m": mean}, {"e": np.array(exponent, np.float32)}, device)
    np.testing.assert_allclose(got["y"], np.power(x - mean, np.float32(exponent)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_tanh_gelu_over_a_channel_bias_matches_numpy(device):
    """magika's GELU: a per-channel bias (broadcast along the row) then the tanh approximation, in one map."""
    x = RNG.standard_normal((1, 512, 508)).astype(np.float32)
    bias = RNG.standard_normal((1, 512, 1)).astype(np.float32)
    c = {"k": np.array(0.044715, np.float32), "s": np.array(0.7978845608, np.float32)}
    c |= {"h": np.array(0.5, np.float32), "one": np.array(1.0, np.float32)}
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"]),
        helper.make_node("Mul", ["a", "a"], ["a2"]),
        helper.make_node("Mul", ["a2", "a"], ["a3"]),
        helper.make_node("Mul", ["a3", "k"], ["ka3"]),
        helper.make_node("Add", ["a", "ka3"], ["u"]),
        helper.make_node("Mul", ["u", "s"], ["su"]),
        helper.make_node("Tanh", ["su"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["t1"]),
        helper.make_node("Mul", ["a", "h"], ["ha"]),
        helper.make_node("Mul", ["ha", "t1"], ["y"]),
    ]
    got = run(nodes, {"x": x, "b": bias}, c, device)
    a = x + bias
    want = 0.5 * a * (1 + np.tanh(0.7978845608 * (a + 0.044715 * a**3)))
    np.testing.assert_allclose(got["y"], want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [(), (3,)])
def test_matmul_epilogue_with_broadcast_reads_matches_numpy(device, batch):
    """A GEMM's fused epilogue reading a bias (suffix), a per-row scale (strided) and a per-batch block."""
    m, k, n = 130, 96, 200
    a = RNG.standard_normal((*batch, m, k)).astype(np.float32)
    w = RNG.standard_normal((k, n)).astype(np.float32)
    bias = RNG.standard_normal(n).astype(np.float32)
    scale = RNG.standard_normal((m, 1)).astype(np.float32)
    block = RNG.standard_normal((m, n)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["a", "w"], ["y0"]),
        helper.make_node("Add", ["y0", "bias"], ["y1"]),
        helper.make_node("Mul", ["y1", "scale"], ["y2"]),
        helper.make_node("Add", ["y2", "block"], ["y3"]),
        helper.make_node("Erf", ["y3"], ["y"]),
    ]
    got = run(nodes, {"a": a, "scale": scale, "block": block}, {"w": w, "bias": bias}, device)
    erf = np.vectorize(math.erf)
    want = erf((((a @ w) + bias) * scale + block).astype(np.float64))
    np.testing.assert_allclose(got["y"], want, rtol=1e-4, atol=1e-4)
