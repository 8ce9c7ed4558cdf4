"""Graph passes: each one acts where it should, and the optimised graph computes what the original did.

Reference outputs come from onnxruntime on the *original* model; the optimised model is run
by onnxruntime too (it stays at the original opset) and, through hamr.compile, by hamr.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from hamr.ir.passes import PassManager, optimise
from hamr.ir.passes.constant_folding import ConstantFoldingPass
from hamr.ir.passes.identity import IdentityEliminationPass
from hamr.ir.passes.noop import NoOpToIdentityPass, is_noop
from hamr.ir.passes.pipeline import default_passes
from hamr.ir.signature import signature_of
from tests.helpers import require

ort = require("onnxruntime")

F = TensorProto.FLOAT
RNG = np.random.default_rng(11)


def vi(name: str, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def make(nodes, inputs, outputs, inits=(), name="g") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def run_ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def optimised(model: onnx.ModelProto):
    """The model after hamr's pipeline, still at its own opset, and the pass records."""
    result, records = optimise(ir.from_proto(model))
    return result, records


def ops(model: ir.Model) -> list[str]:
    return [node.op_type for node in model.graph]


def all_ops(model: ir.Model) -> collections.Counter:
    return collections.Counter(n.op_type for n in ir.traversal.RecursiveGraphIterator(model.graph))


def assert_same_outputs(original: onnx.ModelProto, model: ir.Model, feeds: dict) -> None:
    """onnxruntime on the original vs onnxruntime on the optimised graph vs hamr end to end."""
    expected = run_ort(original, feeds)
    proto = ir.to_proto(model)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == [o.name for o in original.graph.output]
    got = run_ort(proto, feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    session = hamr.Session(hamr.compile(original))
    outputs = session.run(feeds)
    assert list(outputs) == [o.name for o in original.graph.output]
    for g, e in zip(outputs.values(), expected):
        assert np.asarray(g).shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def floats(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- constant folding ------------------------------------------------------------------------


def test_constant_subgraph_folds_into_an_initializer():
    k1, k2, w = floats(3), floats(3), floats(4, 3)
    model = make(
        [
            helper.make_node("Add", ["k1", "k2"], ["k"]),
            helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.float32(2.0))),
            helper.make_node("Mul", ["k", "two"], ["k2x"]),
            helper.make_node("Transpose", ["w"], ["wt"]),
            helper.make_node("MatMul", ["x", "wt"], ["h"]),
            helper.make_node("Add", ["h", "k2x"], ["y"]),
        ],
        [vi("x", [2, 4])],
        [vi("y", [2, 3])],
        [init("k1", k1), init("k2", k2), init("w", w.T.copy())],
    )
    result, _ = optimised(model)
    assert ops(result) == ["MatMul", "Add"]
    folded = {name: v.const_value.numpy() for name, v in result.graph.initializers.items()}
    assert "k1" not in folded and "k2" not in folded, "inputs of folded nodes are dropped once unused"
    values = list(folded.values())
    assert any(v.shape == (3,) and np.allclose(v, (k1 + k2) * 2) for v in values)
    assert any(v.shape == (4, 3) and np.allclose(v, w) for v in values)
    assert_same_outputs(model, result, {"x": floats(2, 4)})


def test_shape_of_static_input_folds():
    model = make(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Reshape", ["z", "s"], ["zr"]),
            helper.make_node("Add", ["zr", "x"], ["y"]),
            helper.make_node("Shape", ["x"], ["tail"], start=1),
            helper.make_node("Cast", ["tail"], ["tail_f"], to=F),
            helper.make_node("Mul", ["y", "tail_f"], ["y2"]),
        ],
        [vi("x", [2, 3]), vi("z", [6])],
        [vi("y2", [2, 3])],
    )
    result, _ = optimised(model)
    assert "Shape" not in ops(result)
    assert "Cast" not in ops(result), "Cast of a folded shape folds too"
    assert ops(result).count("Reshape") == 1
    shapes = [v.const_value.numpy() for v in result.graph.initializers.values()]
    assert any(s.dtype == np.int64 and s.tolist() == [2, 3] for s in shapes)
    assert any(s.dtype == np.float32 and s.tolist() == [3.0] for s in shapes)
    assert_same_outputs(model, result, {"x": floats(2, 3), "z": floats(6)})


def test_shape_of_symbolic_input_does_not_fold():
    model = make(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["z", "s"], ["y"])],
        [vi("x", ["batch", 3]), vi("z", ["n"])],
        [vi("y", ["batch", 3])],
    )
    result, _ = optimised(model)
    assert ops(result) == ["Shape", "Reshape"]
    assert_same_outputs(model, result, {"x": floats(4, 3), "z": floats(12)})


def test_big_constant_of_shape_is_not_folded():
    model = make(
        [
            helper.make_node(
                "ConstantOfShape", ["dims"], ["big"], value=numpy_helper.from_array(np.array([0.5], np.float32))
            ),
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
            helper.make_node("Add", ["x", "total"], ["y"]),
        ],
        [vi("x", [2])],
        [vi("y", [2])],
        [init("dims", np.array([1000, 1000], np.int64))],
    )
    result, _ = optimised(model)
    assert "ConstantOfShape" in ops(result)
    for value in result.graph.initializers.values():
        assert value.const_value.size < 1000, f"{value.name} ({value.const_value.size} elements) was folded in"
    assert_same_outputs(model, result, {"x": np.array([1.0, -1.0], np.float32)})


def test_small_constant_of_shape_is_folded():
    model = make(
        [
            helper.make_node(
                "ConstantOfShape", ["dims"], ["c"], value=numpy_helper.from_array(np.array([1.5], np.float32))
            ),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        [vi("x", [2, 3])],
        [vi("y", [2, 3])],
        [init("dims", np.array([2, 3], np.int64))],
    )
    result, _ = optimised(model)
    assert ops(result) == ["Add"]
    (value,) = [v.const_value.numpy() for v in result.graph.initializers.values()]
    np.testing.assert_array_equal(value, np.full((2, 3), 1.5, np.float32))
    assert_same_outputs(model, result, {"x": floats(2, 3)})


def test_broadcast_that_grows_a_lot_is_not_folded():
    model = make(
        [
            helper.make_node("Add", ["col", "row"], ["grid"]),
            helper.make_node("ReduceMax", ["grid"], ["m"], keepdims=0),
            helper.make_node("Mul", ["x", "m"], ["y"]),
        ],
        [vi("x", [3])],
        [vi("y", [3])],
        [init("col", floats(1000, 1)), init("row", floats(1, 1000))],
    )
    result, _ = optimised(model)
    assert ops(result) == ["Add", "ReduceMax", "Mul"]
    assert_same_outputs(model, result, {"x": floats(3)})


def test_nondeterministic_op_is_not_folded():
    model = make(
        [helper.make_node("RandomUniform", [], ["r"], shape=[3], seed=1.0), helper.make_node("Mul", ["x", "r"], ["y"])],
        [vi("x", [3])],
        [vi("y", [3])],
    )
    result, _ = optimised(model)
    assert ops(result) == ["RandomUniform", "Mul"]


def test_graph_output_computed_from_constants_is_kept_as_an_output():
    model = make(
        [helper.make_node("Add", ["a", "b"], ["y"]), helper.make_node("Neg", ["x"], ["z"])],
        [vi("x", [2])],
        [vi("y", [2]), vi("z", [2])],
        [init("a", floats(2)), init("b", floats(2))],
    )
    result, _ = optimised(model)
    assert [o.name for o in result.graph.outputs] == ["y", "z"]
    assert_same_outputs(model, result, {"x": floats(2)})


def test_constant_folding_pass_alone():
    model = make(
        [helper.make_node("Sqrt", ["k"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])],
        [vi("x", [3])],
        [vi("y", [3])],
        [init("k", np.array([4.0, 9.0, 16.0], np.float32))],
    )
    ir_model = ir.from_proto(model)
    result = ConstantFoldingPass()(ir_model)
    assert result.modified
    assert ops(result.model) == ["Add"]
    folded = result.model.graph.node(0).inputs[1]
    np.testing.assert_array_equal(folded.const_value.numpy(), np.array([2.0, 3.0, 4.0], np.float32))
    assert not ConstantFoldingPass()(result.model).modified  # nothing left to fold


# -- no-ops and identities -------------------------------------------------------------------


def test_noop_to_identity_rewrites_dropout_cast_and_reshape():
    model = make(
        [
            helper.make_node("Dropout", ["x", "ratio"], ["d"]),
            helper.make_node("Cast", ["d"], ["c"], to=F),
            helper.make_node("Reshape", ["c", "same"], ["r"]),
            helper.make_node("Relu", ["r"], ["y"]),
        ],
        [vi("x", [2, 3])],
        [vi("y", [2, 3])],
        [init("ratio", np.float32(0.5)), init("same", np.array([2, 3], np.int64))],
    )
    ir_model = ir.from_proto(model)
    ir.passes.common.ShapeInferencePass()(ir_model)
    assert [is_noop(n) for n in ir_model.graph] == [True, True, True, False]
    result = NoOpToIdentityPass()(ir_model)
    assert result.modified
    assert ops(result.model) == ["Identity", "Identity", "Identity", "Relu"]
    after = IdentityEliminationPass()(result.model)
    assert after.modified
    assert ops(after.model) == ["Relu"]
    assert after.model.graph.node(0).inputs[0].name == "x"


def test_dropout_at_inference_is_removed():
    model = make(
        [helper.make_node("Dropout", ["x", "ratio", "training"], ["d"]), helper.make_node("Tanh", ["d"], ["y"])],
        [vi("x", [4])],
        [vi("y", [4])],
        [init("ratio", np.float32(0.3)), init("training", np.bool_(False))],
    )
    result, _ = optimised(model)
    assert ops(result) == ["Tanh"]
    assert_same_outputs(model, result, {"x": floats(4)})


def test_dropout_whose_mask_is_used_stays():
    model = make(
        [
            helper.make_node("Dropout", ["x"], ["d", "mask"]),
            helper.make_node("Cast", ["mask"], ["mf"], to=F),
            helper.make_node("Add", ["d", "mf"], ["y"]),
        ],
        [vi("x", [4])],
        [vi("y", [4])],
    )
    result, _ = optimised(model)
    assert "Dropout" in ops(result)
    assert_same_outputs(model, result, {"x": floats(4)})


def test_dropout_in_training_mode_stays():
    model = make(
        [helper.make_node("Dropout", ["x", "ratio", "training"], ["y"])],
        [vi("x", [4])],
        [vi("y", [4])],
        [init("ratio", np.float32(0.3)), init("training", np.bool_(True))],
    )
    result, _ = optimised(model)
    assert ops(result) == ["Dropout"]


def test_cast_to_same_type_is_removed_but_a_real_cast_stays():
    model = make(
        [
            helper.make_node("Cast", ["x"], ["same"], to=F),
            helper.make_node("Cast", ["same"], ["as_int"], to=TensorProto.INT32),
            helper.make_node("Cast", ["as_int"], ["back"], to=F),
            helper.make_node("Add", ["back", "same"], ["y"]),
        ],
        [vi("x", [5])],
        [vi("y", [5])],
    )
    result, _ = optimised(model)
    assert ops(result).count("Cast") == 2
    assert collections.Counter(ops(result)) == {"Cast": 2, "Add": 1}
    assert_same_outputs(model, result, {"x": np.array([1.7, -2.2, 0.4, 3.9, -0.6], np.float32)})


def test_noop_that_feeds_a_graph_output_keeps_the_output_name():
    model = make(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Cast", ["r"], ["y"], to=F)],
        [vi("x", [3])],
        [vi("y", [3])],
    )
    result, _ = optimised(model)
    assert ops(result) == ["Relu"]
    assert [o.name for o in result.graph.outputs] == ["y"]
    assert result.graph.node(0).outputs[0].name == "y"
    assert_same_outputs(model, result, {"x": floats(3)})


def test_identity_chain_is_removed():
    model = make(
        [
            helper.make_node("Identity", ["x"], ["a"]),
            helper.make_node("Relu", ["a"], ["b"]),
            helper.make_node("Identity", ["b"], ["c"]),
            helper.make_node("Identity", ["c"], ["y"]),
        ],
        [vi("x", [3])],
        [vi("y", [3])],
    )
    result, _ = optimised(model)
    assert ops(result) == ["Relu"]
    assert [o.name for o in result.graph.outputs] == ["y"]
    assert_same_outputs(model, result, {"x": floats(3)})


def test_identity_from_input_to_output_stays():
    model = make([helper.make_node("Identity", ["x"], ["y"])], [vi("x", [3])], [vi("y", [3])])
    result, _ = optimised(model)
    assert ops(result) == ["Identity"]
    assert [i.name for i in result.graph.inputs] == ["x"]
    assert [o.name for o in result.graph.outputs] == ["y"]
    assert_same_outputs(model, result, {"x": floats(3)})


def test_two_outputs_from_one_value_both_survive():
    model = make(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Identity", ["r"], ["y1"]),
            helper.make_node("Identity", ["r"], ["y2"]),
        ],
        [vi("x", [3])],
        [vi("y1", [3]), vi("y2", [3])],
    )
    result, _ = optimised(model)
    assert [o.name for o in result.graph.outputs] == ["y1", "y2"]
    assert_same_outputs(model, result, {"x": floats(3)})


def _if_model(outer_is_output: bool) -> onnx.ModelProto:
    """An If whose then-branch passes an outer-scope value straight out through an Identity."""
    then_branch = helper.make_graph([helper.make_node("Identity", ["a"], ["t"])], "then", [], [vi("t", [3])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["a"], ["e"])], "else", [], [vi("e", [3])])
    nodes = [
        helper.make_node("Relu", ["x"], ["h"]),
        helper.make_node("Identity", ["h"], ["a"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
    ]
    outputs = [vi("y", [3])] + ([vi("a", [3])] if outer_is_output else [])
    return make(nodes, [vi("x", [3]), vi("cond", [], TensorProto.BOOL)], outputs)


@pytest.mark.parametrize("outer_is_output", [False, True], ids=["inner", "also-graph-output"])
def test_identity_elimination_keeps_if_branches_working(outer_is_output):
    model = _if_model(outer_is_output)
    result, _ = optimised(model)
    assert "Identity" not in ops(result), "the main-graph Identity goes"
    assert all_ops(result)["If"] == 1
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    for cond in (True, False):
        assert_same_outputs(model, result, {"x": x, "cond": np.array(cond)})


def test_if_branch_reading_a_folded_constant():
    then_branch = helper.make_graph([helper.make_node("Add", ["x", "k"], ["t"])], "then", [], [vi("t", [2])])
    else_branch = helper.make_graph([helper.make_node("Sub", ["x", "k"], ["e"])], "else", [], [vi("e", [2])])
    model = make(
        [
            helper.make_node("Mul", ["a", "b"], ["k"]),
            helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
        ],
        [vi("x", [2]), vi("cond", [], TensorProto.BOOL)],
        [vi("y", [2])],
        [init("a", floats(2)), init("b", floats(2))],
    )
    result, _ = optimised(model)
    assert ops(result) == ["If"]
    for cond in (True, False):
        assert_same_outputs(model, result, {"x": floats(2), "cond": np.array(cond)})


# -- common subexpressions and dead code -----------------------------------------------------


def test_common_subexpressions_are_merged():
    model = make(
        [
            helper.make_node("MatMul", ["x", "w"], ["m1"]),
            helper.make_node("MatMul", ["x", "w"], ["m2"]),
            helper.make_node("Relu", ["m1"], ["r1"]),
            helper.make_node("Relu", ["m2"], ["r2"]),
            helper.make_node("Add", ["r1", "r2"], ["y"]),
        ],
        [vi("x", [2, 4])],
        [vi("y", [2, 3])],
        [init("w", floats(4, 3))],
    )
    result, _ = optimised(model)
    assert collections.Counter(ops(result)) == {"MatMul": 1, "Relu": 1, "Add": 1}
    assert_same_outputs(model, result, {"x": floats(2, 4)})


def test_nodes_that_differ_in_attributes_are_not_merged():
    model = make(
        [
            helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
            helper.make_node("LeakyRelu", ["x"], ["b"], alpha=0.2),
            helper.make_node("Add", ["a", "b"], ["y"]),
        ],
        [vi("x", [4])],
        [vi("y", [4])],
    )
    result, _ = optimised(model)
    assert ops(result).count("LeakyRelu") == 2
    assert_same_outputs(model, result, {"x": floats(4)})


def test_dead_nodes_and_initializers_are_removed():
    model = make(
        [
            helper.make_node("Exp", ["x"], ["dead1"]),
            helper.make_node("Mul", ["dead1", "unused_w"], ["dead2"]),
            helper.make_node("Sigmoid", ["x"], ["y"]),
        ],
        [vi("x", [3])],
        [vi("y", [3])],
        [init("unused_w", floats(3))],
    )
    result, records = optimised(model)
    assert ops(result) == ["Sigmoid"]
    assert "unused_w" not in result.graph.initializers
    dce = [r for r in records if r.name == "RemoveUnusedNodesPass"]
    assert dce and dce[0].nodes_before == 3 and dce[0].nodes_after == 1
    assert_same_outputs(model, result, {"x": floats(3)})


# -- signature and records -------------------------------------------------------------------


def test_symbolic_dims_stay_symbolic():
    model = make(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Identity", ["h"], ["y"]),
        ],
        [vi("x", ["batch", 4])],
        [vi("y", ["batch", 2]), vi("s", [2], TensorProto.INT64)],
        [init("w", floats(4, 2))],
    )
    result, _ = optimised(model)
    signature = signature_of(result.graph)
    assert [(s.name, s.shape) for s in signature.inputs] == [("x", ["batch", 4])]
    assert [(s.name, s.shape) for s in signature.outputs] == [("y", ["batch", 2]), ("s", [2])]
    assert "Shape" in ops(result), "the shape of a symbolic input is only known at run time"
    exe = hamr.compile(model)
    assert exe.signature.inputs[0].shape == ["batch", 4]
    assert exe.signature.outputs[0].shape == ["batch", 2]
    for batch in (1, 5):
        assert_same_outputs(model, result, {"x": floats(batch, 4)})


def test_pass_manager_records_every_pass():
    model = make(
        [
            helper.make_node("Add", ["k1", "k2"], ["k"]),
            helper.make_node("Identity", ["x"], ["a"]),
            helper.make_node("Mul", ["a", "k"], ["y"]),
            helper.make_node("Exp", ["x"], ["dead"]),
        ],
        [vi("x", [3])],
        [vi("y", [3])],
        [init("k1", floats(3)), init("k2", floats(3))],
    )
    passes = default_passes()
    manager = PassManager(passes)
    result = manager(ir.from_proto(model))
    records = manager.records
    assert [r.name for r in records] == [type(p).__name__ for p in passes]
    assert {
        "ConstantFoldingPass",
        "NoOpToIdentityPass",
        "IdentityEliminationPass",
        "CommonSubexpressionEliminationPass",
        "RemoveUnusedNodesPass",
    } <= {r.name for r in records}
    assert records[0].nodes_before == 4
    assert records[-1].nodes_after == sum(1 for _ in result.graph.all_nodes()) == 1
    for before, after in zip(records, records[1:]):
        assert before.nodes_after == after.nodes_before
        assert before.initializers_after == after.initializers_before
    for r in records:
        assert isinstance(r.seconds, float) and 0 <= r.seconds < 5
        assert set(r.to_json()) == {
            "name",
            "seconds",
            "modified",
            "nodes_before",
            "nodes_after",
            "initializers_before",
            "initializers_after",
        }
        assert str(r.nodes_before) in r.line() and r.name in r.line()
    folding = next(r for r in records if r.name == "ConstantFoldingPass")
    assert folding.modified and folding.nodes_after == folding.nodes_before - 1
    identity = next(r for r in records if r.name == "IdentityEliminationPass")
    assert identity.modified and identity.nodes_after == identity.nodes_before - 1


def test_compiled_executable_keeps_pass_records():
    model = make([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [3])], [vi("y", [3])])
    exe = hamr.compile(model)
    assert [p["name"] for p in exe.passes] == [type(p).__name__ for p in default_passes()]
    assert all(p["nodes_before"] == p["nodes_after"] == 1 for p in exe.passes)


def test_reduce_with_runtime_axes_gets_its_rank():
    from hamr.frontends import import_onnx

    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
            helper.make_node("Sub", ["x", "s"], ["y"]),
            helper.make_node("ReduceMax", ["x", "axes"], ["z"], keepdims=0),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5]),
            helper.make_tensor_value_info("axes", TensorProto.INT64, [2]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 5]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n"]),
        ],
    )
    model, _ = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    model, _ = optimise(model)
    shapes = {o.name: o.shape for node in model.graph for o in node.outputs}
    assert shapes["s"] is not None and len(shapes["s"]) == 3  # keepdims: the input's rank
    x = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    exe = hamr.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), targets=["cpu"])
    assert exe.variants["cpu"]["fallback"] == {}
    out = hamr.Session(exe, device="cpu").run({"x": x, "axes": np.array([0, 2], np.int64)})
    np.testing.assert_allclose(out["y"], x - x.sum(axis=(0, 2), keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(out["z"], x.max(axis=(0, 2)), rtol=1e-6)
