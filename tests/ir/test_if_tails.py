"""IfTailPass: the nodes after a rank-changing If move into its branches; an If decided by ranks is inlined."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr

F = TensorProto.FLOAT


def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def model() -> onnx.ModelProto:
    """x [n, m] -> s = c ? squeeze(x, -1) : x (c: the last dim is 1), then an If decided by rank
    (Size(Shape(s)) == 1: the torch LSTMCell's batched/unbatched test), then relu and a sum."""
    axes = helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([-1], np.int64)))
    one = helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.array(1, np.int64)))
    squeeze = helper.make_graph([helper.make_node("Squeeze", ["x", "axes"], ["sq"])], "sq", [], [vi("sq", ["n"])])
    same = helper.make_graph([helper.make_node("Identity", ["x"], ["id"])], "id", [], [vi("id", ["n", "m"])])
    double = helper.make_graph([helper.make_node("Add", ["s", "s"], ["d"])], "d", [], [vi("d", None)])
    negate = helper.make_graph([helper.make_node("Neg", ["s"], ["ng"])], "ng", [], [vi("ng", None)])
    nodes = [
        axes,
        one,
        helper.make_node("Shape", ["x"], ["last"], start=-1),
        helper.make_node("Squeeze", ["last"], ["last0"]),
        helper.make_node("Equal", ["last0", "one"], ["c"]),
        helper.make_node("If", ["c"], ["s"], then_branch=squeeze, else_branch=same),
        helper.make_node("Shape", ["s"], ["shape_s"]),
        helper.make_node("Size", ["shape_s"], ["rank"]),
        helper.make_node("Equal", ["rank", "one"], ["vector"]),
        helper.make_node("If", ["vector"], ["t"], then_branch=double, else_branch=negate),
        helper.make_node("Relu", ["t"], ["r"]),
        helper.make_node("ReduceSum", ["r"], ["y"], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "tails", [vi("x", ["n", "m"])], [vi("y", [])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def ifs(graph: ir.Graph) -> int:
    return sum(1 for node in ir.traversal.RecursiveGraphIterator(graph) if node.op_type == "If")


def test_tails_move_into_the_branches_and_rank_decided_ifs_are_inlined():
    exe = hamr.compile(model(), targets=["cpu"])
    record = next(p for p in exe.passes if p["name"] == "IfTailPass")
    assert record["modified"]
    top = [node.op_type for node in exe.model.graph]
    assert top.count("If") == 1 and "Relu" not in top  # Relu and ReduceSum went into the branches
    assert ifs(exe.model.graph) == 1  # each copy's rank test was decided at compile time and inlined
    assert exe.variants["cpu"]["fallback"] == {}
    session = hamr.Session(exe, device="cpu")
    for m in (1, 3):
        x = np.random.default_rng(m).standard_normal((4, m)).astype(np.float32)
        (want,) = ReferenceEvaluator(model()).run(None, {"x": x})
        np.testing.assert_allclose(session.run({"x": x})["y"], want, rtol=1e-6)


def test_a_model_without_if_is_untouched():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain", [vi("x", [2])], [vi("y", [2])])
    exe = hamr.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), targets=["reference"])
    assert not next(p for p in exe.passes if p["name"] == "IfTailPass")["modified"]
