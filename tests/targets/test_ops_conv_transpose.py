"""float32 ConvTranspose (sgemm + column gather on cpu, runs of one output row per work item on opencl) with its fused
epilogue."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from tests.helpers import DEVICES, run_natively

RNG = np.random.default_rng(29)


def upsampling_block(group: int, dilations) -> onnx.ModelProto:
    """ConvTranspose (stride 2, pads, output padding, bias) -> folded batch norm (Mul, Add) -> Relu, as detectors' necks."""
    c, m = 4, 6
    inits = [
        numpy_helper.from_array(RNG.standard_normal((c, m // group, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(RNG.standard_normal(m).astype(np.float32), "b"),
        numpy_helper.from_array(RNG.uniform(0.5, 2, (m, 1, 1)).astype(np.float32), "scale"),
        numpy_helper.from_array(RNG.standard_normal((m, 1, 1)).astype(np.float32), "shift"),
    ]
    nodes = [
        helper.make_node(
            "ConvTranspose",
            ["x", "w", "b"],
            ["t"],
            strides=[2, 2],
            pads=[1, 0, 1, 1],
            output_padding=[1, 1],
            group=group,
            dilations=dilations,
        ),
        helper.make_node("Mul", ["t", "scale"], ["s"]),
        helper.make_node("Add", ["s", "shift"], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "up",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", c, 5, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", m, None, None])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("dilations", [[2, 1], [1, 1]])  # [1, 1]: the taps step by the stride
@pytest.mark.parametrize("device", DEVICES)
def test_conv_transpose_with_its_epilogue_matches_reference(device, dilations):
    x = RNG.standard_normal((2, 4, 5, 7)).astype(np.float32)
    got, want = run_natively(upsampling_block(1, dilations), {"x": x}, device)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_grouped_conv_transpose_matches_onnxruntime(device):
    """onnx.reference cannot run grouped ConvTranspose; onnxruntime is the reference here."""
    ort = pytest.importorskip("onnxruntime")
    model = upsampling_block(2, [1, 2])
    x = RNG.standard_normal((1, 4, 5, 7)).astype(np.float32)
    exe = hamr.compile(model, targets=["cpu" if device == "cpu" else "opencl"])
    got = hamr.Session(exe, device=device).run({"x": x})["y"]
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv_transpose_takes_the_following_elementwise_ops_as_its_epilogue():
    kernels = hamr.compile(upsampling_block(1, [1, 1]), targets=["cpu"]).variants["cpu"]["kernels"]
    assert [k["ops"] for k in kernels] == ["conv_transpose+Mul+Add+Relu"]
