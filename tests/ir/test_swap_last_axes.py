"""PyTorch's reshaped `k.transpose(-1, -2)` becomes one Transpose, composed with the head Transpose before it."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr

RNG = np.random.default_rng(13)
BIG = 2**63 - 1


def ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def scores_model(back_order=((-(2**63), -2), (-1, BIG), (-2, -1)), start_attr=True):
    """MatMul(q, reshape(transpose(reshape(Transpose(k))))) for q [b, 3, s, 4] and k [b, s, 3, 4]."""
    inits = [ints("m1", [-1])]
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1, 3]),
        helper.make_node("Shape", ["kt"], ["s"], **({"start": 0} if start_attr else {})),
    ]
    pieces = {}
    for lo, hi in [(-2, -1), (-1, BIG), *back_order]:
        name = f"s_{lo}_{hi}".replace("-", "m")
        if name not in pieces:
            inits += [ints(f"{name}_lo", [lo]), ints(f"{name}_hi", [hi])]
            nodes.append(helper.make_node("Slice", ["s", f"{name}_lo", f"{name}_hi"], [name]))
            pieces[name] = (lo, hi)
    names = {v: k for k, v in pieces.items()}
    nodes += [
        helper.make_node("Concat", ["m1", names[(-2, -1)], names[(-1, BIG)]], ["merged_shape"], axis=0),
        helper.make_node("Reshape", ["kt", "merged_shape"], ["merged"]),
        helper.make_node("Transpose", ["merged"], ["turned"], perm=[0, 2, 1]),
        helper.make_node("Concat", [names[tuple(p)] for p in back_order], ["back_shape"], axis=0),
        helper.make_node("Reshape", ["turned", "back_shape"], ["kT"]),
        helper.make_node("MatMul", ["q", "kT"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "swap",
        [
            helper.make_tensor_value_info("q", TensorProto.FLOAT, ["b", 3, "s", 4]),
            helper.make_tensor_value_info("k", TensorProto.FLOAT, ["b", "s", 3, 4]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def compile_and_compare(model, s=5):
    feeds = {
        "q": RNG.standard_normal((2, 3, s, 4)).astype(np.float32),
        "k": RNG.standard_normal((2, s, 3, 4)).astype(np.float32),
    }
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    exe = hamr.compile(model, targets=["cpu"])
    session = hamr.Session(exe, device="cpu")
    with session.profiling() as profile:
        got = session.run(feeds)["out"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    return [n for n in exe.model.graph], [e.ops or e.name for e in profile.kernels()]


@pytest.mark.parametrize("start_attr", [True, False])
def test_reshaped_swap_becomes_one_folded_transpose(start_attr):
    nodes, kernels = compile_and_compare(scores_model(start_attr=start_attr))
    transposes = [n for n in nodes if n.op_type == "Transpose"]
    assert [tuple(t.attributes.get_ints("perm")) for t in transposes] == [(0, 2, 3, 1)]
    assert not any(n.op_type in ("Reshape", "Shape") for n in nodes)
    assert not any("transpose" in k.lower() for k in kernels), kernels  # read through the MatMul's strides


def test_a_reshape_that_does_not_swap_stays():
    # the split keeps the merged order, so the result is a reshape of the transposed rows, not a transpose
    model = scores_model(back_order=((-(2**63), -2), (-2, -1), (-1, BIG)))
    nodes, _ = compile_and_compare(model, s=4)  # q @ that needs s == 4
    assert sum(n.op_type == "Reshape" for n in nodes) == 2
