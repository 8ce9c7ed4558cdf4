"""The register-blocked OpenCL GEMM (MatMul and Gemm) on PoCL: whole tiles, edge tiles, batches, transposes and a
fused epilogue, against NumPy. The GPU targets build the same kernel."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import hamr
from hamr.targets.native.ops.linalg import GEMM_RI, GEMM_W
from tests.helpers import opencl_devices

pytestmark = pytest.mark.skipif(not opencl_devices(), reason="no OpenCL device")
RNG = np.random.default_rng(5)


def _run(nodes, inputs: dict, outputs: list[str], initializers=()) -> dict:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, v.shape) for n, v in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    exe = hamr.compile(model, targets=["opencl"])
    assert exe.variants["opencl"]["fallback"] == {}
    return hamr.Session(exe, device="opencl:0").run(inputs)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((1, 1), (1, 1)),
        ((GEMM_RI, 3), (3, GEMM_W)),  # one whole tile
        ((GEMM_RI + 1, 33), (33, GEMM_W + 1)),  # edge tiles in both directions
        ((130, 300), (300, 65)),
        ((3, 1, 5, 7), (2, 7, 9)),  # batch broadcast
        ((17,), (17, 20)),
    ],
)
def test_matmul_tiles_and_batches(a_shape, b_shape):
    a = RNG.standard_normal(a_shape).astype(np.float32)
    b = RNG.standard_normal(b_shape).astype(np.float32)
    got = _run([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"])["y"]
    np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("m, n, k", [(GEMM_RI * 2, GEMM_W * 2, 8), (13, 37, 21)])
def test_gemm_transposes_alpha_beta_and_a_fused_relu(trans_a, trans_b, m, n, k):
    a = RNG.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = RNG.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c = RNG.standard_normal((n,)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["a", "b", "c"], ["g"], alpha=0.5, beta=2.0, transA=trans_a, transB=trans_b),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    got = _run(nodes, {"a": a, "b": b, "c": c}, ["y"])["y"]
    want = np.maximum(0.5 * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + 2.0 * c, 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
