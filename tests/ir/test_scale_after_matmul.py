"""A scalar scaling of a MatMul operand moves after the MatMul, so a head Transpose feeds the MatMul directly."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr

RNG = np.random.default_rng(3)


def attention_scores(scale=None, scale_is_input=False, mul_read_twice=False):
    """MatMul(Transpose(q) * s, Transpose(k) * s) for q, k of shape [2, 5, 3, 4]."""
    scale = np.array(0.42, np.float32) if scale is None else scale
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 5, 3, 4]) for n in ("q", "k")]
    inits = []
    if scale_is_input:
        inputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, []))
    else:
        inits.append(numpy_helper.from_array(scale, "s"))
    nodes = [
        helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["qt", "s"], ["qs"]),
        helper.make_node("Mul", ["s", "kt"], ["ks"]),
        helper.make_node("MatMul", ["qs", "ks"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["out"]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    if mul_read_twice:
        outputs.append(helper.make_tensor_value_info("qs", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "scores", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def compile_and_compare(model):
    feeds = {n: RNG.standard_normal((2, 5, 3, 4)).astype(np.float32) for n in ("q", "k")}
    if len(model.graph.input) > 2:
        feeds["s"] = np.array(0.42, np.float32)
    expected = ReferenceEvaluator(model).run(None, feeds)
    exe = hamr.compile(model, targets=["cpu"])
    got = hamr.Session(exe, device="cpu").run(feeds)
    for value, info in zip(expected, model.graph.output, strict=True):
        np.testing.assert_allclose(got[info.name], value, rtol=1e-5, atol=1e-6)
    return [n.op_type for n in exe.model.graph]


@pytest.mark.parametrize("scale", [np.array(0.42, np.float32), np.array([0.42], np.float32)])
def test_scalar_scales_move_after_the_matmul(scale):
    ops = compile_and_compare(attention_scores(scale))
    assert ops == ["Transpose", "Transpose", "MatMul", "Mul", "Mul", "Softmax"]


@pytest.mark.parametrize(
    "options",
    [
        {"scale": RNG.uniform(0.5, 1.5, (3, 1, 1)).astype(np.float32)},  # not a scalar
        {"scale_is_input": True},  # not a constant
    ],
)
def test_other_scalings_stay_before_the_matmul(options):
    ops = compile_and_compare(attention_scores(**options))
    assert ops.index("MatMul") > max(i for i, op in enumerate(ops) if op == "Mul")


def test_a_product_read_elsewhere_stays():
    ops = compile_and_compare(attention_scores(mul_read_twice=True))
    assert ops.index("Mul") < ops.index("MatMul")


def test_a_dequantised_weight_stays_one_weight():
    # Cast(q) * s is computed (and packed) once at load; moving s after the MatMul would scale every run's output
    q = (np.arange(64 * 96) % 251 - 125).astype(np.int8).reshape(64, 96)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["qf", "s"], ["w"]),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
        ],
        "dequantised",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 96])],
        [numpy_helper.from_array(q, "q"), numpy_helper.from_array(np.float32(0.5), "s")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = RNG.standard_normal((2, 64)).astype(np.float32)
    exe = hamr.compile(model, targets=["cpu"])
    got = hamr.Session(exe, device="cpu").run({"x": x})["y"]
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-5, atol=1e-4)
    ops = [n.op_type for n in exe.model.graph]
    assert ops.index("Mul") < ops.index("MatMul")
