"""Provably equal symbolic dims get one name, so residual Adds fuse; dims that may broadcast keep theirs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr

RNG = np.random.default_rng(11)


def conv(name, x, out, kernel, stride=1, pad=None):
    pad = (kernel - 1) // 2 if pad is None else pad
    w = numpy_helper.from_array(RNG.standard_normal((4, 4, kernel, kernel)).astype(np.float32), f"{name}_w")
    node = helper.make_node("Conv", [x, w.name], [out], strides=[stride] * 2, pads=[pad] * 4, name=name)
    return node, w


def residual_model(second_input=False, strides=(1, 1)):
    """Add(Conv3x3(x), Conv1x1(x or y)), both through a Relu."""
    a, wa = conv("a", "x", "ca", 3, strides[0])
    b, wb = conv("b", "y" if second_input else "x", "cb", 1, strides[1])
    nodes = [a, b, helper.make_node("Relu", ["cb"], ["rb"]), helper.make_node("Add", ["ca", "rb"], ["s"])]
    nodes.append(helper.make_node("Relu", ["s"], ["out"]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, "h", "w"])]
    if second_input:
        inputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, "h2", "w2"]))
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "residual", inputs, outputs, [wa, wb])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def add_operand_shapes(exe):
    add = next(n for n in exe.model.graph if n.op_type == "Add")
    return [tuple(str(d) for d in v.shape) for v in add.inputs]


def run_both(model, feeds):
    exe = hamr.compile(model, targets=["cpu"])
    session = hamr.Session(exe, device="cpu")
    with session.profiling() as profile:
        got = session.run(feeds)["out"]
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, feeds)[0], rtol=1e-4, atol=1e-4)
    return exe, [e.ops or e.name for e in profile.kernels()]


@pytest.mark.parametrize(("strides", "hw"), [((1, 1), (6, 5)), ((2, 2), (7, 9)), ((1, 1), (1, 3))])
def test_same_formula_over_one_input_gives_one_name(strides, hw):
    model = residual_model(strides=strides)
    exe, kernels = run_both(model, {"x": RNG.standard_normal((2, 4, *hw)).astype(np.float32)})
    first, second = add_operand_shapes(exe)
    assert first == second
    assert not any(k.lower().startswith("add") for k in kernels), kernels  # the Add fused into a conv
    if strides == (1, 1):
        assert first[2:] == ("h", "w")  # a size-keeping conv gives the input's own name back


def test_different_inputs_keep_their_names_and_still_broadcast():
    model = residual_model(second_input=True)
    exe, _ = run_both(
        model,
        {
            "x": RNG.standard_normal((1, 4, 6, 5)).astype(np.float32),
            "y": RNG.standard_normal((1, 4, 1, 5)).astype(np.float32),
        },
    )
    first, second = add_operand_shapes(exe)
    assert first[2] != second[2]


def test_different_strides_keep_different_names():
    a, wa = conv("a", "x", "ca", 3, 2)
    b, wb = conv("b", "x", "cb", 3, 1)
    nodes = [a, b, helper.make_node("ReduceSum", ["ca"], ["ra"]), helper.make_node("ReduceSum", ["cb"], ["rb"])]
    nodes.append(helper.make_node("Add", ["ra", "rb"], ["out"]))
    graph = helper.make_graph(
        nodes,
        "strides",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [wa, wb],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    exe, _ = run_both(model, {"x": RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)})
    shapes = {
        n.outputs[0].name: tuple(str(d) for d in n.outputs[0].shape) for n in exe.model.graph if n.op_type == "Conv"
    }
    assert len(set(shapes.values())) == 2
