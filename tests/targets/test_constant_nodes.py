"""Constant nodes computed at load with NumPy agree with onnx.reference, and hand back what they do not handle."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

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
        ("Reshape", [X, np.array([4, 6], I64)]),
    ):
        view, _ = _node(op, inputs, {})
        assert constant_nodes.evaluate(view, inputs) is None
