"""The pixel-row convolution (render/conv_c.py): output pixels as GEMM rows times panels of 32 output channels,
the input padded and split by column phase once per run. Every case is compared with onnx.reference at both ISA
levels; the baseline build runs the same weights through its im2col GEMM path."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr
from hamr.targets.cpu import isa
from hamr.targets.native.weights import DroppedWeight

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def conv_relu_model(x, w, b, **attrs):
    inputs = ["x", "w"] + (["b"] if b is not None else [])
    weights = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if b is not None else [])
    graph = helper.make_graph(
        [helper.make_node("Conv", inputs, ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, list(expected.shape)))
    return model, expected


CASES = {
    # name: x shape, w shape, attrs
    "3x3, 30 wide (two 14-pixel tiles and 2), 70 channels (a 6-channel panel)": (
        (2, 9, 5, 30),
        (70, 9, 3, 3),
        dict(pads=[1, 1, 1, 1]),
    ),
    "ResNet's 7x7/2 stem: two column phases": ((1, 3, 37, 45), (40, 3, 7, 7), dict(strides=[2, 2], pads=[3, 3, 3, 3])),
    "stride 3, dilated, asymmetric pads: three phases": (
        (1, 5, 17, 23),
        (33, 5, 3, 2),
        dict(strides=[3, 3], pads=[0, 2, 1, 1], dilations=[2, 3]),
    ),
    "1x1/2 downsample without padding": ((1, 12, 9, 11), (16, 12, 1, 1), dict(strides=[2, 2])),
    "pointwise over 130 channels: read in place": ((1, 130, 6, 5), (36, 130, 1, 1), {}),
    "3x3 without padding: read in place": ((2, 6, 9, 17), (20, 6, 3, 3), {}),
    "strides (2, 1) without padding: every other row read in place": (
        (1, 7, 12, 16),
        (18, 7, 3, 2),
        dict(strides=[2, 1]),
    ),
    "grouped, 20 channels per group": ((2, 16, 8, 9), (40, 8, 3, 3), dict(group=2, pads=[1, 1, 1, 1])),
    "1-D, strided": ((2, 6, 50), (8, 6, 5), dict(strides=[2], pads=[2, 1])),
    "3-D": ((1, 4, 5, 6, 7), (12, 4, 3, 3, 2), dict(pads=[1, 0, 1, 1, 1, 0], strides=[1, 2, 1])),
    "end padding past the input": ((1, 4, 6, 6), (8, 4, 2, 2), dict(strides=[3, 3], pads=[0, 0, 2, 2])),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("case", list(CASES))
def test_pixel_rows_match_onnx_reference(level, case, bias):
    x_shape, w_shape, attrs = CASES[case]
    x, w = rand(*x_shape), rand(*w_shape) / np.float32(np.sqrt(np.prod(w_shape[1:])))
    model, expected = conv_relu_model(x, w, rand(w_shape[0]) if bias else None, **attrs)
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    assert session.executable.variants["cpu"]["fallback"] == {}
    np.testing.assert_allclose(session.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)
    panels = session.program.weights[f"w::chanpanels{attrs.get('group', 1)}"]
    assert isinstance(panels, DroppedWeight) != isa.has_avx512(level)


def test_a_pointwise_conv_over_few_channels_stays_on_the_gemm_path(level):
    """Below 32 taps a 1x1 convolution reads its input in place as the GEMM's B, with weights in 14-row tiles."""
    x, w = rand(1, 24, 7, 9), rand(30, 24, 1, 1) / np.float32(5)
    model, expected = conv_relu_model(x, w, rand(30))
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    np.testing.assert_allclose(session.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)
    assert "w::tiles1" in session.program.weights
    assert not any("::chanpanels" in name for name in session.program.weights)


def test_a_depthwise_conv_packs_nothing(level):
    """Fewer than 4 output channels per group run the direct depthwise loop, which reads the plain weights."""
    x, w = rand(1, 8, 10, 12), rand(16, 1, 3, 3)
    model, expected = conv_relu_model(x, w, rand(16), group=8, pads=[1, 1, 1, 1])
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    np.testing.assert_allclose(session.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)
    assert not any("::" in name for name in session.program.weights)


OPENCL_CASES = {
    # name: x shape, w shape, attrs
    "70 channels (a 64-channel tile and a tail of 6), 150 positions (tiles of 64 and a tail)": (
        (2, 9, 10, 15),
        (70, 9, 3, 3),
        dict(pads=[1, 1, 1, 1]),
    ),
    "grouped, 20 channels per group, strided": ((1, 16, 11, 13), (40, 8, 3, 3), dict(group=2, strides=[2, 1])),
    "depthwise: one channel per group, one-row tiles": ((1, 8, 20, 21), (8, 1, 3, 3), dict(group=8, pads=[1, 1, 1, 1])),
    "12 channels, dilated 1-D": ((2, 6, 70), (12, 6, 3), dict(dilations=[2], pads=[2, 2])),
}


@pytest.mark.opencl
@pytest.mark.parametrize("case", list(OPENCL_CASES))
def test_opencl_conv_tiles_match_onnx_reference(case):
    """The register-blocked OpenCL Conv: 16 x RI channels by 64 positions per work-group, tails masked."""
    x_shape, w_shape, attrs = OPENCL_CASES[case]
    x, w = rand(*x_shape), rand(*w_shape) / np.float32(np.sqrt(np.prod(w_shape[1:])))
    model, expected = conv_relu_model(x, w, rand(w_shape[0]), **attrs)
    session = hamr.Session(hamr.compile(model, targets=["opencl"]), device="opencl:0")
    assert session.executable.variants["opencl"]["fallback"] == {}
    np.testing.assert_allclose(session.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)
