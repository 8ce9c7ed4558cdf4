"""Constant nodes computed at load with NumPy agree with onnx.reference, and hand back what they do not handle."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from hamr.ir.node_view import NodeView
from hamr.ir.onnx_reference.kernels import evaluate_node
from hamr.targets.native import constant_nodes

X = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
I64 = np.int64

CASES = [
    ("Constant", [], {"value": numpy_helper.from_array(X, "v")}),
    ("Unsqueeze", [X, np.array([0, -1], I64)], {}),
    ("Unsqueeze", [X, np.array([3, 1], I64)], {}),
    ("Squeeze", [X[:1, :, :1], np.array([-1, 0], I64)], {}),
    ("Squeeze", [X[:1, :, :1]], {}),
    ("Concat", [X, X[:, :1]], {"axis": 1}),
    ("Concat", [X, X], {"axis": -1}),
    ("Slice", [X, np.array([1, -3], I64), np.array([9, 2**62], I64)], {}),
    ("Slice", [X, np.array([-2], I64), np.array([-1], I64), np.array([-1], I64)], {}),
    ("Slice", [X, np.array([0, 1], I64), np.array([3, 4], I64), np.array([2, 0], I64), np.array([2, 1], I64)], {}),
    ("Constant", [], {"value_float": 1.5}),
    ("Constant", [], {"value_ints": [3, -1]}),
    ("Identity", [X], {}),
    ("Add", [X, X[:1, :, :1]], {}),
    ("Sub", [np.int32(7), np.array([1, 9], np.int32)], {}),
    ("Mul", [X, np.float32(0.25)], {}),
    ("Div", [X, X[:, :, 1:2] + 1], {}),
    ("Div", [np.array([7, -7, 7, -7, 6], I64), np.array([2, 2, -2, -2, 3], I64)], {}),
    ("Cast", [X * 1.7 - 9], {"to": TensorProto.INT8}),
    ("Cast", [np.array([0, 1, 255], np.uint8)], {"to": TensorProto.FLOAT16}),
    ("Cast", [np.array([0.0, 2.0, np.nan], np.float32)], {"to": TensorProto.BOOL}),
    ("Expand", [X[:, :1], np.array([3, 1, 1, 4], I64)], {}),
    ("Expand", [np.float32(2), np.array([2, 3], I64)], {}),
    ("Reshape", [X, np.array([0, -1], I64)], {}),
    ("Reshape", [X, np.array([4, 6], I64)], {}),
    ("Reshape", [X[:0], np.array([0, 3], I64)], {"allowzero": 1}),
    ("Transpose", [X], {}),
    ("Transpose", [X], {"perm": [1, 2, 0]}),
    ("ConstantOfShape", [np.array([2, 3], I64)], {}),
    ("ConstantOfShape", [np.array([4], I64)], {"value": numpy_helper.from_array(np.array([-3], I64), "v")}),
    ("ConstantOfShape", [np.array([], I64)], {"value": numpy_helper.from_array(np.array([1.5], np.float32), "v")}),
    ("Tile", [X, np.array([1, 2, 3], I64)], {}),
    ("Gather", [X, np.array([[2, -1], [0, 0]], I64)], {"axis": 1}),
    ("Gather", [X, np.int32(1)], {}),
    ("Gather", [X, np.array([3, -4], np.int32)], {"axis": -1}),
    ("Shape", [X], {}),
    ("Shape", [X], {"start": -2, "end": 9}),
    ("DequantizeLinear", [np.array([[-128, 0, 127]], np.int8), np.float32(0.5), np.int8(3)], {}),
    ("DequantizeLinear", [np.array([[0, 9, 255]], np.uint8), np.float32(0.1)], {}),
    (
        "DequantizeLinear",
        [np.arange(6, dtype=np.uint8).reshape(2, 3), np.array([0.5, 2.0, 1.0], np.float32), np.full(3, 2, np.uint8)],
        {"axis": -1},
    ),
    (
        "DequantizeLinear",
        [np.arange(6, dtype=np.int32).reshape(3, 2), np.array([0.5, 2.0, 1.0], np.float32)],
        {"axis": 0},
    ),
]


def _node(op: str, inputs: list, attrs: dict) -> NodeView:
    names = [f"i{k}" for k in range(len(inputs))]
    proto = helper.make_node(op, names, ["y"], **attrs)
    return NodeView(ir.serde.deserialize_node(proto), 22), proto


@pytest.mark.parametrize("op, inputs, attrs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_constant_nodes_match_onnx_reference(op, inputs, attrs):
    view, proto = _node(op, inputs, attrs)
    got = constant_nodes.evaluate(view, inputs)
    assert got is not None
    want = evaluate_node(proto, {"": 22}, inputs)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].dtype == want[0].dtype


def test_negative_slice_steps_and_other_ops_are_left_to_onnx_reference():
    for op, inputs in (
        ("Slice", [X, np.array([-1], I64), np.array([-9], I64), np.array([0], I64), np.array([-1], I64)]),
        ("Neg", [X]),
        ("Add", [X, np.float64(1)]),  # mixed types: onnx.reference refuses them in its own words
        ("Div", [np.array([1], I64), np.array([0], I64)]),
        ("Gather", [X, np.array([2], I64)]),  # out of range
        ("Cast", [np.array(["1"], dtype=object)]),
    ):
        view, _ = _node(op, inputs, {"to": TensorProto.FLOAT} if op == "Cast" else {})
        assert constant_nodes.evaluate(view, inputs) is None


def test_weights_dequantized_at_load_run_through_numpy(monkeypatch):
    """A Cast * scale chain and a DequantizeLinear computed at load: no onnx.reference evaluator, same result."""
    import hamr
    from hamr.targets.native import weights

    q = (np.arange(64 * 96) % 251 - 125).astype(np.int8).reshape(64, 96)  # 4x larger in float32: not folded
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["qf", "s"], ["w1"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w2"]),
            helper.make_node("MatMul", ["x", "w1"], ["y1"]),
            helper.make_node("MatMul", ["x", "w2"], ["y2"]),
        ],
        "dequantized",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 96]) for n in ("y1", "y2")],
        [numpy_helper.from_array(q, "q"), numpy_helper.from_array(np.float32(0.5), "s")]
        + [numpy_helper.from_array(np.int8(2), "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    monkeypatch.setattr(weights, "evaluate_node", lambda *a: pytest.fail("evaluated through onnx.reference"))
    program = session.program
    assert {n.op for n in program.lowered.all_constants} == {"Cast", "Mul", "DequantizeLinear"}
    # read only at load (q, qf) or through a copy packed at load (w1, w2): none is held
    assert all(isinstance(program.weights[n], weights.DroppedWeight) for n in ("q", "qf", "w1", "w2"))
    initializers = {n: v.const_value.numpy() for n, v in session.executable.model.graph.initializers.items()}
    program.weights = weights.materialise_constants(program.lowered, initializers, program.opsets)
    x = np.arange(128, dtype=np.float32).reshape(2, 64) / 64
    y1, y2 = (session.run({"x": x})[n] for n in ("y1", "y2"))
    np.testing.assert_allclose(y1, x @ (q.astype(np.float32) * 0.5), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(y2, x @ ((q.astype(np.float32) - 2) * 0.5), rtol=1e-5, atol=1e-4)
