"""BatchNormalization leaves no kernel of its own: folded into a Conv whose weights are known only at load, or run as
a per-channel Mul+Add fused into its producer; a hard-swish after it fuses whole. Results against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr

RNG = np.random.default_rng(11)
C_IN, C = 32, 16  # weights of 4608 elements: a Tile making them is not folded at compile time
SHAPE = [1, C, 6, 5]
DEVICES = {"cpu": "cpu", "opencl": "opencl:0"}


def _bn_params(prefix: str = "") -> list:
    return [
        numpy_helper.from_array(RNG.uniform(0.5, 2, C).astype(np.float32), f"{prefix}scale"),
        numpy_helper.from_array(RNG.standard_normal(C).astype(np.float32), f"{prefix}beta"),
        numpy_helper.from_array(RNG.standard_normal(C).astype(np.float32), f"{prefix}mean"),
        numpy_helper.from_array(RNG.uniform(0.5, 2, C).astype(np.float32), f"{prefix}var"),
    ]


BN_INPUTS = ["scale", "beta", "mean", "var"]


def _model(nodes, inits, outputs, inputs=None, value_info=()):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C_IN, 6, 5])]
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs]
    graph = helper.make_graph(nodes, "bn", inputs, outs, inits, value_info=list(value_info))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _weights_at_load(kind: str) -> tuple[list, list]:
    """Nodes making the Conv weight `w` and bias `b` at load: a `Constant` node, ConstantOfShape fills or a Tile."""
    w = RNG.standard_normal((C, C_IN, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(C).astype(np.float32)
    if kind == "Tile":
        nodes = [
            helper.make_node("Tile", ["w_part", "w_repeats"], ["w"]),
            helper.make_node("Tile", ["b_part", "b_repeats"], ["b"]),
        ]
        inits = [
            numpy_helper.from_array(w[: C // 4], "w_part"),
            numpy_helper.from_array(np.array([4, 1, 1, 1], np.int64), "w_repeats"),
            numpy_helper.from_array(b[: C // 4], "b_part"),
            numpy_helper.from_array(np.array([4], np.int64), "b_repeats"),
        ]
        return nodes, inits
    if kind == "Constant":
        nodes = [
            helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w)),
            helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(b)),
        ]
        return nodes, []
    nodes = [
        helper.make_node("ConstantOfShape", ["w_shape"], ["w"], value=numpy_helper.from_array(np.array([0.25], "f4"))),
        helper.make_node("ConstantOfShape", ["b_shape"], ["b"], value=numpy_helper.from_array(np.array([-0.5], "f4"))),
    ]
    shapes = [
        numpy_helper.from_array(np.array([C, C_IN, 3, 3], np.int64), "w_shape"),
        numpy_helper.from_array(np.array([C], np.int64), "b_shape"),
    ]
    return nodes, shapes


def _run(model, x, target="cpu"):
    exe = hamr.compile(model, targets=[target])
    got = hamr.Session(exe, device=DEVICES[target]).run({"x": x})
    labels = [k["ops"] for k in exe.variants[target]["kernels"]]
    return exe, got, labels


def _check(model, x, got, names):
    expected = ReferenceEvaluator(model).run(None, {"x": x})
    for name, want in zip(names, expected):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kind, ops",
    [
        ("Constant", ["Conv", "Relu"]),  # scaled now
        ("ConstantOfShape", ["Expand", "Conv", "Relu"]),  # the scaled fill expanded at load
        ("Tile", ["Tile", "Mul", "Conv", "Relu"]),  # scaled at load
    ],
)
def test_batchnorm_folds_into_a_conv_whose_weights_are_computed_at_load(kind, ops):
    weight_nodes, shapes = _weights_at_load(kind)
    nodes = [
        *weight_nodes,
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", *BN_INPUTS], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    model = _model(nodes, _bn_params() + shapes, [("y", SHAPE)])
    x = RNG.standard_normal((1, C_IN, 6, 5)).astype(np.float32)
    exe, got, labels = _run(model, x)
    assert [n.op_type for n in exe.model.graph] == ops
    assert labels == ["conv+Relu"]
    _check(model, x, got, ["y"])


def test_batchnorm_after_an_add_fuses_into_its_kernel_as_mul_add():
    nodes = [
        helper.make_node("Add", ["x", "x"], ["s"]),
        helper.make_node("BatchNormalization", ["s", *BN_INPUTS], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    shape = [1, C, 6, 5]
    model = _model(
        nodes, _bn_params(), [("y", shape)], inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    )
    x = RNG.standard_normal(shape).astype(np.float32)
    _, got, labels = _run(model, x)
    assert labels == ["Add+Mul+Add+Relu"]
    _check(model, x, got, ["y"])


def test_batchnorm_after_a_conv_read_twice_is_the_conv_epilogue_and_may_be_a_graph_output():
    w = numpy_helper.from_array(RNG.standard_normal((C, C_IN, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", *BN_INPUTS], ["n"]),
        helper.make_node("Neg", ["c"], ["z"]),
    ]
    model = _model(nodes, [w, *_bn_params()], [("n", SHAPE), ("z", SHAPE)])
    x = RNG.standard_normal((1, C_IN, 6, 5)).astype(np.float32)
    _, got, labels = _run(model, x)
    assert labels == ["conv+Mul+Add+Neg"]
    _check(model, x, got, ["n", "z"])


def _hard_swish_model():
    """Conv -> (Conv output read twice, so unfoldable) BatchNormalization -> x * clip(x + 3, 0, 6) / 6, with a
    dynamic batch written as -1 on the input and on every intermediate (as onnx's version converter leaves it)."""
    w = numpy_helper.from_array(RNG.standard_normal((C, C_IN, 3, 3)).astype(np.float32), "w")
    consts = [
        numpy_helper.from_array(np.array(v, np.float32), name)
        for name, v in [("three", 3.0), ("zero", 0.0), ("six", 6.0)]
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Neg", ["c"], ["z"]),
        helper.make_node("BatchNormalization", ["c", *BN_INPUTS], ["n"]),
        helper.make_node("Add", ["n", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "six"], ["k"]),
        helper.make_node("Mul", ["n", "k"], ["m"]),
        helper.make_node("Div", ["m", "six"], ["y"]),
    ]
    dynamic = [-1, C, 6, 5]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, C_IN, 6, 5])]
    value_info = [helper.make_tensor_value_info(v, TensorProto.FLOAT, dynamic) for v in ("c", "n", "a", "k", "m")]
    return _model(nodes, [w, *_bn_params(), *consts], [("y", dynamic), ("z", dynamic)], inputs, value_info)


def test_a_hard_swish_after_a_batchnorm_fuses_into_the_conv_as_one_kernel():
    model = _hard_swish_model()
    x = RNG.standard_normal((2, C_IN, 6, 5)).astype(np.float32)
    _, got, labels = _run(model, x)
    assert labels == ["conv+Neg+Mul+Add+Add+Clip+Mul+Div"]
    _check(model, x, got, ["y", "z"])


@pytest.mark.opencl
def test_a_hard_swish_after_a_batchnorm_fuses_on_opencl():
    model = _hard_swish_model()
    x = RNG.standard_normal((2, C_IN, 6, 5)).astype(np.float32)
    _, got, labels = _run(model, x, target="opencl")
    assert labels == ["conv+Neg+Mul+Add+Add+Clip+Mul+Div"]
    _check(model, x, got, ["y", "z"])


def _runtime_params_model(shape):
    names = ["x", "scale", "beta", "mean", "var"]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)] + [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [shape[1]]) for n in names[1:]
    ]
    nodes = [helper.make_node("BatchNormalization", names, ["y"], epsilon=1e-4)]
    return _model(nodes, [], [("y", shape)], inputs=inputs)


@pytest.mark.parametrize("target", ["cpu", pytest.param("opencl", marks=pytest.mark.opencl)])
@pytest.mark.parametrize("shape", [[2, 5, 7, 3], [3, 6]])
def test_batchnorm_with_parameters_fed_at_run_time_runs_as_its_own_kernel(target, shape):
    model = _runtime_params_model(shape)
    c = shape[1]
    feeds = {
        "x": RNG.standard_normal(shape).astype(np.float32),
        "scale": RNG.uniform(0.5, 2, c).astype(np.float32),
        "beta": RNG.standard_normal(c).astype(np.float32),
        "mean": RNG.standard_normal(c).astype(np.float32),
        "var": RNG.uniform(0.5, 2, c).astype(np.float32),
    }
    exe = hamr.compile(model, targets=[target])
    assert [k["ops"] for k in exe.variants[target]["kernels"]] == ["batchnorm"]
    got = hamr.Session(exe, device=DEVICES[target]).run(feeds)
    expected = ReferenceEvaluator(model).run(None, feeds)[0]
    np.testing.assert_allclose(got["y"], expected, rtol=1e-4, atol=1e-5)


BLOCK_READS = [
    ((2, 3, 4, 5), (3, 1, 1)),  # per channel
    ((2, 3, 4, 5), (1, 3, 1, 1)),
    ((2, 3, 4, 5), (2, 3, 1, 1)),  # squeeze-and-excitation scale: outer axes
    ((2, 3, 4, 5), (3, 4, 1)),
    ((2, 3, 4, 5), (2, 1, 1, 1)),
    ((2, 3, 0, 5), (3, 1, 1)),
]


@pytest.mark.parametrize("target", ["cpu", pytest.param("opencl", marks=pytest.mark.opencl)])
def test_reads_of_a_block_of_the_domain_axes_match_numpy(target):
    """Inputs that span a run of the domain's axes (1 elsewhere) are read as (gid / inner) % block."""
    feeds, nodes, infos, outputs, want = {}, [], [], [], {}
    for i, (sa, sb) in enumerate(BLOCK_READS):
        a, b, y = f"a{i}", f"b{i}", f"y{i}"
        feeds[a] = RNG.standard_normal(sa).astype(np.float32)
        feeds[b] = RNG.standard_normal(sb).astype(np.float32)
        infos += [helper.make_tensor_value_info(a, TensorProto.FLOAT, sa)]
        infos += [helper.make_tensor_value_info(b, TensorProto.FLOAT, sb)]
        nodes += [helper.make_node("Mul", [a, b], [f"m{i}"]), helper.make_node("Add", [f"m{i}", b], [y])]
        outputs.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, sa))
        want[y] = feeds[a] * feeds[b] + feeds[b]
    model = helper.make_model(
        helper.make_graph(nodes, "blocks", infos, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    exe = hamr.compile(model, targets=[target])
    assert [k["ops"] for k in exe.variants[target]["kernels"]] == ["Mul+Add"] * len(BLOCK_READS)
    got = hamr.Session(exe, device=DEVICES[target]).run(feeds)
    for name, expected in want.items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-6, err_msg=name)
