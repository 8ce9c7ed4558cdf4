"""Pow by a constant exponent made by a Constant node inside an If branch (silero-vad's STFT magnitude), where
constant folding leaves the node: native, and equal to NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import hamr


def branch(exponent: float, tag: str):
    nodes = [
        helper.make_node(
            "Constant", [], [f"e_{tag}"], value=helper.make_tensor(f"v_{tag}", TensorProto.FLOAT, [], [exponent])
        ),
        helper.make_node("Pow", ["x", f"e_{tag}"], [f"y_{tag}"]),
    ]
    out = helper.make_tensor_value_info(f"y_{tag}", TensorProto.FLOAT, [3, 5])
    return helper.make_graph(nodes, tag, [], [out])


@pytest.mark.parametrize("flag", [True, False])
def test_pow_by_branch_constant(flag):
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch(2.0, "then"), else_branch=branch(1.0, "else"))],
        "pow_branch",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    assert session.executable.variants["cpu"]["fallback"] == {}
    x = np.random.default_rng(3).standard_normal((3, 5)).astype(np.float32)
    y = session.run({"c": np.array(flag), "x": x})["y"]
    np.testing.assert_allclose(y, x * x if flag else x, rtol=1e-6)
