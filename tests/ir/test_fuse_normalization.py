"""Decomposed layer/RMS normalisations become the single op, and run as the original does under onnx.reference;
near misses stay as they are."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr

RNG = np.random.default_rng(7)
SHAPE = [2, 5, 8]


def const(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name))


def norm_model(
    layer=True,
    axes=(-1,),
    var_axes=None,
    exponent=2.0,
    square_by_mul=False,
    eps_input=False,
    reciprocal=False,
    scale_shape=(8,),
    bias=True,
    opset=18,
    extra_output=None,
):
    """y = normalise(x) over `axes`, written out the way exporters do."""
    nodes = [
        const("axes", np.array(axes, np.int64)),
        const("var_axes", np.array(var_axes or axes, np.int64)),
        const("two", np.array(exponent, np.float32)),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)]
    inits = []
    if layer:
        nodes += [
            helper.make_node("ReduceMean", ["x", "axes"], ["mu"]),
            helper.make_node("Sub", ["x", "mu"], ["d"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["x"], ["d"]))
    square = (
        helper.make_node("Mul", ["d", "d"], ["sq"]) if square_by_mul else helper.make_node("Pow", ["d", "two"], ["sq"])
    )
    nodes += [square, helper.make_node("ReduceMean", ["sq", "var_axes"], ["var"])]
    if eps_input:
        inputs.append(helper.make_tensor_value_info("eps", TensorProto.FLOAT, []))
    else:
        nodes.append(const("eps", np.array(1e-5, np.float32)))
    nodes += [helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"])]
    if reciprocal:
        nodes += [helper.make_node("Reciprocal", ["s"], ["r"]), helper.make_node("Mul", ["r", "d"], ["n"])]
    else:
        nodes.append(helper.make_node("Div", ["d", "s"], ["n"]))
    last = "n"
    if scale_shape is not None:
        inits.append(numpy_helper.from_array(RNG.standard_normal(scale_shape).astype(np.float32), "scale"))
        nodes.append(helper.make_node("Mul", ["scale", "n"], ["scaled"]))
        last = "scaled"
    if bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal(SHAPE[-1]).astype(np.float32), "bias"))
        nodes.append(helper.make_node("Add", [last, "bias"], ["biased"]))
        last = "biased"
    nodes.append(helper.make_node("Neg", [last], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info(extra_output, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "norm", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def compile_and_compare(model, feeds):
    expected = ReferenceEvaluator(model).run(None, feeds)
    exe = hamr.compile(model, targets=["cpu"])
    got = hamr.Session(exe, device="cpu").run(feeds)
    for value, name in zip(expected, [o.name for o in model.graph.output], strict=True):
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5)
    return [n.op_type for n in exe.model.graph]


def feeds_for(model):
    feeds = {"x": RNG.standard_normal(SHAPE).astype(np.float32) * 3 + 1}
    if len(model.graph.input) > 1:
        feeds["eps"] = np.array(1e-5, np.float32)
    return feeds


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"axes": (2,)},
        {"axes": (1, 2), "scale_shape": (5, 8)},
        {"square_by_mul": True},
        {"reciprocal": True},
        {"scale_shape": (1,)},
        {"scale_shape": None},
        {"bias": False},
    ],
)
def test_layer_norm_is_one_op(options):
    model = norm_model(**options)
    ops = compile_and_compare(model, feeds_for(model))
    assert ops == ["LayerNormalization", "Neg"]


@pytest.mark.parametrize("options", [{}, {"reciprocal": True, "scale_shape": None}])
def test_rms_norm_is_one_op(options):
    model = norm_model(layer=False, bias=False, opset=23, **options)
    ops = compile_and_compare(model, feeds_for(model))
    assert ops == ["RMSNormalization", "Neg"]


def test_rms_norm_keeps_a_following_add_as_an_add():
    model = norm_model(layer=False, bias=True, opset=23)
    ops = compile_and_compare(model, feeds_for(model))
    assert ops == ["RMSNormalization", "Add", "Neg"]


@pytest.mark.parametrize(
    "options",
    [
        {"axes": (1,)},  # not the trailing axes
        {"axes": (0, 2)},  # not a contiguous run
        {"exponent": 3.0},  # Pow 3
        {"eps_input": True},  # eps not a constant
        {"extra_output": "d"},  # an intermediate is used elsewhere
    ],
)
def test_near_misses_are_not_rewritten(options):
    model = norm_model(**options)
    ops = compile_and_compare(model, feeds_for(model))
    assert "LayerNormalization" not in ops and "RMSNormalization" not in ops


def test_means_over_different_axes_are_no_layer_norm():
    model = norm_model(axes=(-1,), var_axes=(1, 2), scale_shape=None, bias=False)
    ops = compile_and_compare(model, feeds_for(model))
    assert "LayerNormalization" not in ops  # the centred value's RMS over (1, 2) is a true RMSNormalization


def test_a_scale_that_grows_the_output_stays_a_mul():
    model = norm_model(scale_shape=(3, 1, 1, 8))
    ops = compile_and_compare(model, feeds_for(model))
    assert ops == ["LayerNormalization", "Mul", "Add", "Neg"]
