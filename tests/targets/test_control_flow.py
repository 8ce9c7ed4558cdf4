"""If, Loop and Scan on the native targets: the subgraphs run as native code, checked against onnx.reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr
from hamr.errors import KernelError
from tests.helpers import DEVICES

RNG = np.random.default_rng(13)
W = RNG.standard_normal((8, 8)).astype(np.float32)
F = TensorProto.FLOAT


def tensor(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def opset17(graph) -> onnx.ModelProto:
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def if_model() -> onnx.ModelProto:
    """y = c ? (d ? relu(x w) : x w + x) : sigmoid(x) * 2; the branches read x and w from the outer scope."""
    inner_then = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m1"]), helper.make_node("Relu", ["m1"], ["t1"])],
        "inner_then",
        [],
        [tensor("t1", ["n", 8])],
    )
    inner_else = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m2"]), helper.make_node("Add", ["m2", "x"], ["e1"])],
        "inner_else",
        [],
        [tensor("e1", ["n", 8])],
    )
    then_branch = helper.make_graph(
        [helper.make_node("If", ["d"], ["t"], then_branch=inner_then, else_branch=inner_else)],
        "then",
        [],
        [tensor("t", ["n", 8])],
    )
    two = numpy_helper.from_array(np.array(2, dtype=np.float32), "two")
    else_branch = helper.make_graph(
        [
            helper.make_node("Constant", [], ["k"], value=two),
            helper.make_node("Sigmoid", ["x"], ["s"]),
            helper.make_node("Mul", ["s", "k"], ["e"]),
        ],
        "else",
        [],
        [tensor("e", ["n", 8])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["c"], ["i"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Tanh", ["i"], ["y"]),
        ],
        "if",
        [tensor("x", ["n", 8]), tensor("c", [], TensorProto.BOOL), tensor("d", [], TensorProto.BOOL)],
        [tensor("y", ["n", 8])],
        [numpy_helper.from_array(W, "w")],
    )
    return opset17(graph)


def loop_model() -> onnx.ModelProto:
    """Carries h through h = tanh(h w + x) while the sum of h stays below a limit, at most `trips`
    times; emits each h and the iteration number as scan outputs."""
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h_in", "w"], ["hw"]),
            helper.make_node("Add", ["hw", "x"], ["pre"]),
            helper.make_node("Tanh", ["pre"], ["h_out"]),
            helper.make_node("ReduceSum", ["h_out"], ["total"], keepdims=0),
            helper.make_node("Less", ["total", "limit"], ["cond_out"]),
            helper.make_node("Identity", ["h_out"], ["h_scan"]),
            helper.make_node("Cast", ["i"], ["i_scan"], to=TensorProto.FLOAT),
        ],
        "body",
        [tensor("i", [], TensorProto.INT64), tensor("cond_in", [], TensorProto.BOOL), tensor("h_in", [1, 8])],
        [
            tensor("cond_out", [], TensorProto.BOOL),
            tensor("h_out", [1, 8]),
            tensor("h_scan", [1, 8]),
            tensor("i_scan", []),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "go", "h0"], ["h", "hs", "is"], body=body)],
        "loop",
        [
            tensor("trips", [], TensorProto.INT64),
            tensor("go", [], TensorProto.BOOL),
            tensor("h0", [1, 8]),
            tensor("x", [1, 8]),
            tensor("limit", []),
        ],
        [tensor("h", [1, 8]), tensor("hs", [None, 1, 8]), tensor("is", [None])],
        [numpy_helper.from_array(W * 0.3, "w")],
    )
    return opset17(graph)


def scan_model(directions: list[int], input_axes: list[int], output_axes: list[int]) -> onnx.ModelProto:
    """A running sum over two sequences (the second scaled by the outer `w`), with both step results."""
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["b_t", "scale"], ["bs"]),
            helper.make_node("Add", ["a_t", "bs"], ["ab"]),
            helper.make_node("Add", ["acc_in", "ab"], ["acc_out"]),
            helper.make_node("Relu", ["acc_out"], ["r"]),
        ],
        "body",
        [tensor("acc_in", [4]), tensor("a_t", [4]), tensor("b_t", [4])],
        [tensor("acc_out", [4]), tensor("r", [4]), tensor("ab", [4])],
    )
    node = helper.make_node(
        "Scan",
        ["acc0", "a", "b"],
        ["acc", "rs", "abs"],
        body=body,
        num_scan_inputs=2,
        scan_input_directions=directions,
        scan_input_axes=input_axes,
        scan_output_axes=output_axes,
    )
    a_shape = [5, 4] if input_axes[0] == 0 else [4, 5]
    b_shape = [5, 4] if input_axes[1] in (0, -2) else [4, 5]
    graph = helper.make_graph(
        [node],
        "scan",
        [tensor("acc0", [4]), tensor("a", a_shape), tensor("b", b_shape)],
        [tensor("acc", [4]), tensor("rs", ["r0", "r1"]), tensor("abs", ["a0", "a1"])],
        [numpy_helper.from_array(np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32), "scale")],
    )
    return opset17(graph)


def compiled(model: onnx.ModelProto):
    return hamr.load(hamr.compile(model, targets=["cpu", "opencl"]).to_bytes())


def assert_all_native(exe, target: str, op: str) -> None:
    variant = exe.variants[target]
    assert variant["fallback"] == {}
    assert op not in str(variant["fallback"])
    assert set(variant["placement"].values()) == {target}


def check(model, feeds, device, reference: str = "onnx"):
    exe = compiled(model)
    session = hamr.Session(exe, device=device)
    if reference == "onnxruntime":
        import onnxruntime

        expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)
    else:
        expected = ReferenceEvaluator(model).run(None, feeds)
    got = session.run(feeds)
    for name, want in zip([o.name for o in model.graph.output], expected):
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5)
    return exe, session


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("c, d", [(True, True), (True, False), (False, True)])
def test_if_runs_both_nested_branches_natively(device, c, d):
    x = RNG.standard_normal((3, 8)).astype(np.float32)
    feeds = {"x": x, "c": np.array(c), "d": np.array(d)}
    exe, session = check(if_model(), feeds, device)
    assert_all_native(exe, session.target, "If")
    assert len(exe.variants[session.target]["kernels"]) >= 4  # the kernels of every branch are compiled


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("trips, limit", [(5, 100.0), (20, 2.0), (0, 100.0)])
def test_loop_carries_state_and_stacks_scan_outputs(device, trips, limit):
    feeds = {
        "trips": np.array(trips, dtype=np.int64),
        "go": np.array(True),
        "h0": RNG.standard_normal((1, 8)).astype(np.float32),
        "x": RNG.standard_normal((1, 8)).astype(np.float32),
        "limit": np.array(limit, dtype=np.float32),
    }
    model = loop_model()
    if trips == 0:  # no iteration: the stacked outputs are empty
        session = hamr.Session(compiled(model), device=device)
        got = session.run(feeds)
        np.testing.assert_array_equal(got["h"], feeds["h0"])
        assert got["hs"].shape[0] == 0 and got["is"].shape[0] == 0
        return
    # onnxruntime stacks the scan outputs on a new axis; onnx.reference concatenates them (np.vstack)
    exe, session = check(model, feeds, device, reference="onnxruntime")
    assert_all_native(exe, session.target, "Loop")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "directions, input_axes, output_axes",
    [([0, 0], [0, 0], [0, 0]), ([1, 0], [0, 1], [0, 1]), ([0, 1], [1, -2], [-1, 0])],
)
def test_scan_slices_runs_body_natively_and_concatenates(device, directions, input_axes, output_axes):
    model = scan_model(directions, input_axes, output_axes)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    feeds = {name: RNG.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    exe, session = check(model, feeds, device, reference="onnxruntime")  # onnx.reference scans forward only
    assert_all_native(exe, session.target, "Scan")


def test_scan_of_unequal_sequences_is_one_error_line():
    model = scan_model([0, 0], [0, 1], [0, 0])
    session = hamr.Session(compiled(model), device="cpu")
    feeds = {
        "acc0": np.zeros(4, dtype=np.float32),
        "a": np.zeros((5, 4), dtype=np.float32),
        "b": np.zeros((4, 5), dtype=np.float32),
    }
    feeds["b"] = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises((KernelError, hamr.errors.InputError)) as caught:
        session.run(feeds)
    assert "\n" not in str(caught.value)


def rank_changing_if_model() -> onnx.ModelProto:
    """y = sum(relu(c ? squeeze(x, -1) : x)): the branches differ in rank, as exporters write `if x.shape[-1] == 1`;
    z = c ? x : x + 1 hands the feed back through an Identity."""
    axes = numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes")
    then_branch = helper.make_graph(
        [helper.make_node("Squeeze", ["x", "axes"], ["sq"])], "then", [], [tensor("sq", ["n"])]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["same"])], "else", [], [tensor("same", ["n", "m"])]
    )
    one = numpy_helper.from_array(np.array(1, dtype=np.float32), "one")
    pass_then = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["x2"])], "pass_then", [], [tensor("x2", ["n", "m"])]
    )
    pass_else = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["plus"])], "pass_else", [], [tensor("plus", ["n", "m"])]
    )
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["x"], ["shape"], start=-1),
            helper.make_node("Equal", ["shape", "one_i"], ["c1"]),
            helper.make_node("Squeeze", ["c1"], ["c"]),
            helper.make_node("If", ["c"], ["i"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Relu", ["i"], ["r"]),
            helper.make_node("ReduceSum", ["r"], ["y"], keepdims=0),
            helper.make_node("If", ["c"], ["z"], then_branch=pass_then, else_branch=pass_else),
        ],
        "rank_if",
        [tensor("x", ["n", "m"])],
        [tensor("y", []), tensor("z", ["n", "m"])],
        [axes, one, numpy_helper.from_array(np.array([1], dtype=np.int64), "one_i")],
    )
    return opset17(graph)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("m", [1, 3])
def test_if_whose_branches_differ_in_rank_runs_on_the_target(device, m):
    x = RNG.standard_normal((4, m)).astype(np.float32)
    exe, session = check(rank_changing_if_model(), {"x": x}, device)
    # IfTailPass moved Relu and ReduceSum into both branches, where their ranks are known
    assert_all_native(exe, session.target, "If")
    z = session.run({"x": x})["z"]
    if m == 1:  # the branch returned the feed: the caller gets a copy
        z[...] = 7
        assert not np.any(x == 7)


@pytest.mark.parametrize("target", ["cpu"])
@pytest.mark.parametrize("case", ["test_optional_get_element_sequence", "test_optional_get_element_optional_sequence"])
def test_a_fed_sequence_passed_through_stays_a_sequence(target, case):
    """An output that is a feed passed through is copied for the caller, element by element, not as one array."""
    from hamr.conformance import load_cases
    from hamr.conformance.suite import run_case

    (found,) = [c for c in load_cases() if c.name == case]
    result = run_case(found, target)
    assert result.status in ("passed", "passed_with_fallback"), result.detail


def test_a_scope_reads_through_and_keeps_its_writes():
    from hamr.targets.native.control import Scope

    weights = {"w": 1}
    outer = Scope({"x": 2}, weights)
    inner = Scope({"y": 3}, outer)
    inner["z"] = 4
    inner["x"] = 5  # a body's own value of an outer name shadows it inside the body only
    assert (inner["w"], inner["x"], inner["y"], inner["z"]) == (1, 5, 3, 4)
    assert "w" in inner and "z" not in outer and outer["x"] == 2
    assert inner.get("missing", 6) == 6
    with pytest.raises(KeyError):
        inner["missing"]
