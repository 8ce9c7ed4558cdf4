"""The cpu target's GEMM (hamr_gemm: constant B packed at load) on awkward shapes, on the host's best ISA
build and on the portable baseline build, against NumPy in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from hamr.targets.cpu import isa
from hamr.targets.native.weights import DroppedWeight

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def run_cpu(model, feeds):
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    assert session.executable.variants["cpu"]["fallback"] == {}
    return session.run(feeds)["y"]


def matmul_model(a_shape, b, const_b: bool):
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a_shape))]
    initializers = [numpy_helper.from_array(b, "b")] if const_b else []
    if not const_b:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, list(b.shape)))
    nodes = [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    out_shape = np.matmul(np.zeros(a_shape, np.float32), np.zeros(b.shape, np.float32)).shape
    graph = helper.make_graph(nodes, "mm", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    graph.initializer.extend(initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def close(actual, expected, k):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * max(k, 1) ** 0.5)


@pytest.mark.parametrize("const_b", [True, False], ids=["packed-at-load", "packed-per-run"])
@pytest.mark.parametrize(
    "m, n, k",
    # (1, 300, 260): a GEMV over a B of 78,000 floats, split across the threads though the product is small
    [(1, 1, 1), (1, 7, 33), (7, 33, 130), (130, 7, 1), (33, 130, 7), (130, 65, 300), (15, 33, 0), (1, 300, 260)],
)
def test_matmul_shapes(level, m, n, k, const_b):
    a, b = rand(m, k), rand(k, n)
    y = run_cpu(matmul_model(a.shape, b, const_b), {"a": a} if const_b else {"a": a, "b": b})
    close(y, np.maximum(a.astype(np.float64) @ b, 0), k)


@pytest.mark.parametrize("const_b", [True, False], ids=["packed-at-load", "packed-per-run"])
@pytest.mark.parametrize("a_shape, b_shape", [((2, 3, 17, 40), (3, 40, 33)), ((3, 1, 9, 20), (4, 20, 35))])
def test_batched_matmul_broadcasts_the_batch(level, a_shape, b_shape, const_b):
    a, b = rand(*a_shape), rand(*b_shape)
    y = run_cpu(matmul_model(a.shape, b, const_b), {"a": a} if const_b else {"a": a, "b": b})
    close(y, np.maximum(a.astype(np.float64) @ b, 0), a_shape[-1])


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_transposed_operands_alpha_beta(level, trans_a, trans_b):
    m, n, k = 29, 45, 70
    a = rand(k, m) if trans_a else rand(m, k)
    b = rand(n, k) if trans_b else rand(k, n)
    c = rand(n)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=trans_a, transB=trans_b, alpha=0.5, beta=2.0)
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b, "b"), numpy_helper.from_array(c, "c")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    expected = 0.5 * (a64.T if trans_a else a64) @ (b64.T if trans_b else b64) + 2.0 * c
    close(run_cpu(model, {"a": a}), expected, k)


def test_a_constant_b_is_packed_once_at_load():
    a, b = rand(4, 8), rand(8, 40)
    exe = hamr.compile(matmul_model(a.shape, b, True), targets=["cpu"])
    session = hamr.Session(exe, device="cpu")
    packed = session.program.weights["b::panels"]
    assert packed.shape == (8 * 64,)  # two 32-column panels, the second zero padded
    np.testing.assert_array_equal(packed.reshape(2, 8, 32)[1, :, 8:], 0)
    close(session.run({"a": a})["y"], np.maximum(a.astype(np.float64) @ b, 0), 8)


def attention_scores_model(q_perm, k_perm, q_shape, k_shape, extra_use: bool):
    nodes = [
        helper.make_node("Transpose", ["q"], ["qt"], perm=q_perm),
        helper.make_node("Transpose", ["k"], ["kt"], perm=k_perm),
        helper.make_node("MatMul", ["qt", "kt"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_use:  # kt is also read by something other than a MatMul: it stays a Transpose kernel
        nodes.append(helper.make_node("Relu", ["kt"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    q_out = np.transpose(np.zeros(q_shape), q_perm)
    k_out = np.transpose(np.zeros(k_shape), k_perm)
    outputs[0] = helper.make_tensor_value_info("y", TensorProto.FLOAT, np.matmul(q_out, k_out).shape)
    if extra_use:
        outputs[1] = helper.make_tensor_value_info("r", TensorProto.FLOAT, k_out.shape)
    graph = helper.make_graph(
        nodes,
        "scores",
        [
            helper.make_tensor_value_info("q", TensorProto.FLOAT, list(q_shape)),
            helper.make_tensor_value_info("k", TensorProto.FLOAT, list(k_shape)),
        ],
        outputs,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "q_perm, k_perm, q_shape, k_shape, extra_use, kept",
    [
        ((0, 2, 1, 3), (0, 2, 3, 1), (2, 37, 3, 16), (2, 37, 3, 16), False, 0),  # attention: Q and K^T
        ((0, 2, 1, 3), (0, 2, 3, 1), (1, 20, 2, 8), (1, 20, 2, 8), True, 1),  # K^T is read by a Relu too
        ((1, 0), (1, 0), (33, 17), (40, 33), False, 0),  # both operands transposed
        ((1, 2, 0), (0, 2, 1), (14, 3, 9), (3, 11, 14), False, 0),  # q's contiguous axis becomes its rows
        ((2, 0, 1), (0, 1, 2), (9, 3, 14), (14, 3, 5), False, 1),  # q's contiguous axis becomes a batch axis
    ],
)
def test_transpose_is_folded_into_the_matmul(level, q_perm, k_perm, q_shape, k_shape, extra_use, kept):
    model = attention_scores_model(q_perm, k_perm, q_shape, k_shape, extra_use)
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    q, k = rand(*q_shape), rand(*k_shape)
    out = session.run({"q": q, "k": k})
    expected = np.transpose(q, q_perm).astype(np.float64) @ np.transpose(k, k_perm)
    close(out["y"], expected, expected.shape[-1])
    labels = [kernel["ops"] for kernel in session.executable.variants["cpu"]["kernels"]]
    assert labels.count("transpose") == kept, labels
    if extra_use:
        np.testing.assert_array_equal(out["r"], np.maximum(np.transpose(k, k_perm), 0))


@pytest.mark.parametrize(
    "c, m, group, kernel, strides, pads, dilations",
    [
        (8, 8, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # depthwise
        (8, 16, 8, (3, 3), (2, 2), (1, 0, 1, 2), (1, 1)),  # depthwise, two outputs per channel, strided
        (6, 12, 3, (3, 2), (1, 2), (0, 1, 2, 1), (2, 1)),  # grouped, dilated
        (3, 5, 1, (5, 5), (2, 1), (2, 2, 2, 2), (1, 1)),  # few channels
        (16, 40, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),  # pointwise: the GEMM reads the input directly
        (20, 33, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # 33 rows of weights: the last 14-row tile padded
        (12, 30, 2, (1, 3), (1, 1), (0, 1, 0, 1), (1, 1)),  # grouped: one packed weight matrix per group
        (8, 60, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # few column blocks: the threads share the rows too
    ],
)
def test_conv_matches_onnx_reference(level, c, m, group, kernel, strides, pads, dilations):
    from onnx.reference import ReferenceEvaluator

    x, w, b = rand(2, c, 11, 13), rand(m, c // group, *kernel), rand(m)
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["c"], group=group, strides=strides, pads=pads, dilations=dilations
    )
    graph = helper.make_graph(
        [node, helper.make_node("Relu", ["c"], ["y"])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, list(expected.shape)))
    close(run_cpu(model, {"x": x}), expected, w[0].size)


def conv_model(x_shape, w, b, op="Conv", **attrs):
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def reference_then_cpu(model, x):
    from onnx.reference import ReferenceEvaluator

    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, list(expected.shape)))
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    assert session.executable.variants["cpu"]["fallback"] == {}
    return session, session.run({"x": x})["y"], expected


def test_conv_over_a_unit_axis_reads_weights_packed_at_load(level):
    """magika's (5, 1) convolution over (512, 1): the unit axis is dropped, the weights are packed in panels of 32
    output channels, taps by channels, for the pixel-row path."""
    x, w, b = rand(1, 24, 40, 1), rand(20, 24, 5, 1), rand(20)
    session, y, expected = reference_then_cpu(conv_model(x.shape, w, b), x)
    close(y, expected, w[0].size)
    if not isa.has_avx512(level):  # the build reads the plain weights: their panels are never made
        assert isinstance(session.program.weights["w::chanpanels1"], DroppedWeight)
        return
    assert isinstance(session.program.weights["w"], DroppedWeight)
    panel = session.program.weights["w::chanpanels1"].reshape(24 * 5, 32)
    np.testing.assert_array_equal(panel[:, :20], w.reshape(20, -1).T)
    np.testing.assert_array_equal(panel[:, 20:], 0)


@pytest.mark.parametrize(
    "c, m, group, kernel, strides, pads",
    [
        (24, 24, 1, (2, 2), (2, 2), (0, 0, 0, 0)),  # PP-OCR det's upsampling: taps do not overlap
        (24, 1, 1, (2, 2), (2, 2), (0, 0, 0, 0)),  # one output channel
        (6, 8, 1, (3, 3), (2, 1), (1, 0, 0, 2)),  # overlapping taps, padded (grouped: test_ops_conv_transpose)
    ],
)
def test_conv_transpose_matches_onnx_reference(level, c, m, group, kernel, strides, pads):
    x, w, b = rand(2, c, 9, 10), rand(c, m // group, *kernel), rand(m)
    model = conv_model(x.shape, w, b, "ConvTranspose", group=group, strides=strides, pads=pads)
    _, y, expected = reference_then_cpu(model, x)
    close(y, expected, c * int(np.prod(kernel)))


def test_matmul_epilogue_reads_broadcast_inputs_by_row(level):
    """A bias over the columns and an input over (rows, columns) of a batched MatMul, fused into its epilogue."""
    a, b, bias, res = rand(2, 3, 17, 40), rand(40, 33), rand(33), rand(17, 33)
    nodes = [
        helper.make_node("MatMul", ["a", "b"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["t"]),
        helper.make_node("Add", ["t", "res"], ["u"]),
        helper.make_node("Erf", ["u"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape)) for n, v in (("a", a), ("res", res))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 17, 33])],
        [numpy_helper.from_array(b, "b"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    kernels = [kernel["ops"] for kernel in session.executable.variants["cpu"]["kernels"]]
    assert kernels == ["gemm+Add+Add+Erf"], kernels
    expected = np.vectorize(math.erf)(a.astype(np.float64) @ b + bias + res)
    close(session.run({"a": a, "res": res})["y"], expected, 40)


def conv_bn_model(x_shape, w, b, op, epilogue, **attrs):
    """op, then a per-channel Mul and Add (an unfolded BatchNorm) and an activation, all fused into op's epilogue."""
    per_channel = (b.shape[0],) + (1,) * (len(x_shape) - 2)
    scale, shift = rand(*per_channel), rand(*per_channel)
    nodes = [
        helper.make_node(op, ["x", "w", "b"], ["c"], **attrs),
        helper.make_node("Mul", ["c", "s"], ["d"]),
        helper.make_node("Add", ["d", "t"], ["e"]),
        helper.make_node(epilogue, ["e"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (scale, "s"), (shift, "t"))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "c, m, group, kernel, strides, pads, dilations, size",
    [
        (16, 16, 16, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), (37, 41)),  # depthwise: rows of 16 + a tail, 4-row blocks
        (12, 12, 12, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), (33, 40)),  # strided: two column phases
        (8, 8, 8, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), (10, 10)),  # PP-OCR's 5x5 on a 10x10 plane
        (6, 12, 6, (3, 2), (3, 2), (0, 1, 2, 1), (2, 1), (19, 23)),  # two outputs per channel, dilated, asymmetric
        (4, 4, 2, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), (9, 35)),  # two input channels per group
        (3, 3, 3, (5,), (2,), (1, 3), (2,), (50,)),  # 1-D
        (16, 24, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), (20, 21)),  # pointwise: the GEMM path's row epilogue
    ],
)
def test_conv_epilogue_with_per_channel_inputs(level, c, m, group, kernel, strides, pads, dilations, size):
    from onnx.reference import ReferenceEvaluator

    x, w, b = rand(2, c, *size), rand(m, c // group, *kernel), rand(m)
    attrs = dict(group=group, strides=strides, pads=pads, dilations=dilations)
    model = conv_bn_model(x.shape, w, b, "Conv", "HardSwish", **attrs)
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, list(expected.shape)))
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    kernels = [kernel["ops"] for kernel in session.executable.variants["cpu"]["kernels"]]
    assert kernels == ["conv+Mul+Add+HardSwish"], kernels
    close(session.run({"x": x})["y"], expected, w[0].size)


def test_conv_transpose_epilogue_with_per_channel_inputs(level):
    """PP-OCR det's upsampling followed by an unfolded BatchNorm and Relu, fused and stored by rows."""
    from onnx.reference import ReferenceEvaluator

    x, w, b = rand(1, 8, 12, 10), rand(8, 6, 2, 2), rand(6)
    model = conv_bn_model(x.shape, w, b, "ConvTranspose", "Relu", strides=(2, 2))
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, list(expected.shape)))
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    kernels = [kernel["ops"] for kernel in session.executable.variants["cpu"]["kernels"]]
    assert kernels == ["conv_transpose+Mul+Add+Relu"], kernels
    close(session.run({"x": x})["y"], expected, 8 * 4)
