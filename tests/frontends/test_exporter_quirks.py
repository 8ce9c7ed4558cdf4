"""What exporters write and onnxruntime accepts: each model below runs on onnxruntime, and hamr imports it, runs it
on the cpu target and gives onnxruntime's outputs. (Repeated dim_params and dim_value -1 are in test_dims.py.)"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from tests.helpers import require

RNG = np.random.default_rng(13)
X = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
W = RNG.standard_normal((5, 6)).astype(np.float32)


def _model(nodes, inputs, outputs, initializers=(), opsets=(("", 17),), ir_version=8, value_info=()):
    graph = helper.make_graph(nodes, "exported", inputs, outputs, list(initializers), value_info=list(value_info))
    opset_imports = [helper.make_opsetid(domain, version) for domain, version in opsets]
    return helper.make_model(graph, opset_imports=opset_imports, ir_version=ir_version)


def _float(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def empty_dims():
    """Axes with neither dim_value nor dim_param, and a dim_param of '' (tf2onnx, hand-edited models)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, "", None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, "", 1])
    node = helper.make_node("ReduceMax", ["x"], ["y"], axes=[3], keepdims=1)
    return _model([node], [x], [y], opsets=(("", 17),)), {"x": X}


def no_shapes():
    """No value_info at all, and outputs declared with an element type only (no shape)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Tanh", ["m"], ["y"])]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model(nodes, [_float("x", ["n", 3, 4, 5])], [y], [numpy_helper.from_array(W, "w")]), {"x": X}


def initializer_as_input():
    """IR version 3: every weight is also a graph input (Caffe2, old PyTorch); run with the default."""
    w = numpy_helper.from_array(W, "w")
    inputs = [_float("x", [2, 3, 4, 5]), _float("w", [5, 6])]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    return _model(nodes, inputs, [_float("y", [2, 3, 4, 6])], [w], opsets=(("", 8),), ir_version=3), {"x": X}


def overridable_initializer():
    """IR version 4 and later: an initializer also listed as a graph input is a default the caller may override."""
    model, _ = initializer_as_input()
    model.ir_version = 8
    model.opset_import[0].version = 17
    return model, {"x": X, "w": (W * 2 + 1).astype(np.float32)}


def overridable_initializer_left_alone():
    model, _ = overridable_initializer()
    return model, {"x": X}


def ml_domain_import():
    """skl2onnx models import ai.onnx.ml beside the default domain (here unused by the nodes run natively)."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"])]
    opsets = (("", 15), ("ai.onnx.ml", 3))
    return _model(nodes, [_float("x", ["n", 3, 4, 5])], [_float("y", ["n", 3, 4, 5])], opsets=opsets), {"x": X}


def ml_domain_node():
    """An ai.onnx.ml node (Normalizer, as in a scikit-learn pipeline) among default-domain ones."""
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Normalizer", ["f"], ["n"], domain="ai.onnx.ml", norm="L2"),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    opsets = (("", 15), ("ai.onnx.ml", 1))
    return _model(nodes, [_float("x", [2, 3, 4, 5])], [_float("y", [2, 60])], opsets=opsets), {"x": X}


def unused_vendor_domain():
    """An opset import of a vendor domain (com.microsoft) that no node uses: onnxruntime's optimizer writes it."""
    nodes = [helper.make_node("Abs", ["x"], ["y"])]
    opsets = (("", 13), ("com.microsoft", 1))
    return _model(nodes, [_float("x", [2, 3, 4, 5])], [_float("y", [2, 3, 4, 5])], opsets=opsets), {"x": X}


def old_opset():
    """An opset 9 model (Upsample, the Resize of its day), converted up on import."""
    nodes = [
        helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32))),
        helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest"),
    ]
    opsets = (("", 9),)
    return _model(nodes, [_float("x", [2, 3, 4, 5])], [_float("y", [2, 3, 8, 10])], opsets=opsets), {"x": X}


def constant_attributes():
    """Constant nodes with value_float, value_floats, value_int and value_ints instead of a tensor."""
    nodes = [
        helper.make_node("Constant", [], ["a"], value_float=0.5),
        helper.make_node("Constant", [], ["b"], value_floats=[1.0, -1.0, 2.0, 0.25, 3.0]),
        helper.make_node("Constant", [], ["shape"], value_ints=[2, 3, 20]),
        helper.make_node("Constant", [], ["axis"], value_int=2),
        helper.make_node("Mul", ["x", "a"], ["xa"]),
        helper.make_node("Add", ["xa", "b"], ["xb"]),
        helper.make_node("Reshape", ["xb", "shape"], ["r"]),
        helper.make_node("CumSum", ["r", "axis"], ["y"]),
    ]
    return _model(nodes, [_float("x", [2, 3, 4, 5])], [_float("y", [2, 3, 20])]), {"x": X}


def empty_optional_inputs():
    """Optional inputs skipped with '' in the middle of the list: Clip without min, Resize without roi."""
    nodes = [
        helper.make_node("Clip", ["x", "", "hi"], ["c"]),
        helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="nearest"),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.5, np.float32), "hi"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    return _model(nodes, [_float("x", [2, 3, 4, 5])], [_float("y", [2, 3, 8, 10])], inits), {"x": X}


def trailing_empty_outputs():
    """An optional output left unnamed ('') at the end of a node's outputs (Dropout's mask)."""
    nodes = [helper.make_node("Dropout", ["x"], ["d", ""]), helper.make_node("Neg", ["d"], ["y"])]
    return _model(nodes, [_float("x", [2, 3, 4, 5])], [_float("y", [2, 3, 4, 5])]), {"x": X}


def wrong_value_info():
    """An intermediate's value_info contradicts what the nodes compute (a stale shape left by an editing tool):
    onnxruntime warns and trusts the nodes."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]), helper.make_node("Relu", ["t"], ["y"])]
    stale = _float("t", [2, 3, 4, 5])
    return _model(nodes, [_float("x", [2, 3, 4, 5])], [_float("y", None)], value_info=[stale]), {"x": X}


def rank_unknown_to_inference():
    """A Reshape to a shape computed at run time: shape inference cannot tell the output's rank, onnxruntime can."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ReduceProd", ["s"], ["p"], keepdims=1),
        helper.make_node("Reshape", ["x", "p"], ["flat"]),
        helper.make_node("Softmax", ["flat"], ["y"], axis=-1),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model(nodes, [_float("x", ["a", "b", "c", "d"])], [y], opsets=(("", 18),)), {"x": X}


def shapeless_branch_outputs():
    """An If whose branches declare their outputs with an element type only, as torch.onnx writes them."""

    def branch(name, op):
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)
        return helper.make_graph([helper.make_node(op, ["x"], [f"{name}_out"])], name, [], [out])

    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node(
            "If", ["positive"], ["y"], then_branch=branch("then", "Relu"), else_branch=branch("else", "Neg")
        ),
    ]
    zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model(nodes, [_float("x", [2, 3, 4, 5])], [y], [zero]), {"x": X}


def model_local_function():
    """A model-local function in a domain of its own, called from the graph (torch.onnx's dynamo exporter writes
    them), with a Constant given as value_float inside. (onnxruntime also runs a function that imports an older
    default opset than the model; onnx.checker refuses that as the spec says, and so does hamr.)"""
    body = [
        helper.make_node("Constant", [], ["half"], value_float=0.5),
        helper.make_node("Mul", ["a", "half"], ["m"]),
        helper.make_node("Softmax", ["m"], ["out"], axis=1),
    ]
    function = helper.make_function(
        "local", "HalfSoftmax", ["a"], ["out"], body, opset_imports=[helper.make_opsetid("", 17)]
    )
    nodes = [helper.make_node("HalfSoftmax", ["x"], ["s"], domain="local"), helper.make_node("Relu", ["s"], ["y"])]
    model = _model(nodes, [_float("x", [2, 3, 4, 5])], [_float("y", [2, 3, 4, 5])], opsets=(("", 17), ("local", 1)))
    model.functions.append(function)
    return model, {"x": X}


def tf2onnx_names():
    """Value and node names as tf2onnx and torch.onnx write them: ':', '/', '.' and a leading digit."""
    nodes = [
        helper.make_node("Sigmoid", ["input:0"], ["/model/act/Sigmoid_output_0"], name="/model/act/Sigmoid"),
        helper.make_node("Mul", ["input:0", "/model/act/Sigmoid_output_0"], ["0.out:0"], name="StatefulPartitioned/1"),
    ]
    return _model(nodes, [_float("input:0", [2, 3, 4, 5])], [_float("0.out:0", [2, 3, 4, 5])]), {"input:0": X}


def unused_input():
    """A graph input no node reads (an exporter's leftover): onnxruntime takes a feed for it and ignores it."""
    nodes = [helper.make_node("Exp", ["x"], ["y"])]
    inputs = [_float("x", [2, 3, 4, 5]), _float("unused", [1])]
    feeds = {"x": X, "unused": np.zeros(1, np.float32)}
    return _model(nodes, inputs, [_float("y", [2, 3, 4, 5])]), feeds


def input_and_weight_as_outputs():
    """A graph input and an initializer that are also graph outputs, beside a computed one."""
    nodes = [helper.make_node("Add", ["x", "b"], ["y"])]
    b = numpy_helper.from_array(np.arange(5, dtype=np.float32), "b")
    outputs = [_float("y", [2, 3, 4, 5]), _float("x", [2, 3, 4, 5]), _float("b", [5])]
    return _model(nodes, [_float("x", [2, 3, 4, 5])], outputs, [b]), {"x": X}


CASES = [
    empty_dims,
    no_shapes,
    initializer_as_input,
    pytest.param(
        overridable_initializer,
        marks=pytest.mark.xfail(
            strict=True,
            raises=hamr.errors.InputError,
            reason="hamr folds an initializer listed as a graph input into a constant (RemoveInitializersFromInputsPass)"
            " and refuses a feed for it; onnxruntime lets the caller override it",
        ),
    ),
    overridable_initializer_left_alone,
    ml_domain_import,
    ml_domain_node,
    unused_vendor_domain,
    old_opset,
    constant_attributes,
    empty_optional_inputs,
    trailing_empty_outputs,
    wrong_value_info,
    rank_unknown_to_inference,
    shapeless_branch_outputs,
    model_local_function,
    tf2onnx_names,
    unused_input,
    input_and_weight_as_outputs,
]


def _check(model: onnx.ModelProto, feeds: dict, hamr_model):
    ort = require("onnxruntime")
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    session = hamr.Session(hamr.compile(hamr_model, targets=["cpu"]), device="cpu")
    got = session.run(feeds)
    assert len(got) == len(expected)
    for (name, value), reference in zip(got.items(), expected):
        assert value.shape == reference.shape, name
        np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=lambda case: getattr(case, "__name__", None))
def test_hamr_runs_what_onnxruntime_runs(case):
    model, feeds = case()
    _check(model, feeds, model)


def test_weights_in_an_external_data_file_next_to_the_model(tmp_path):
    model, feeds = no_shapes()
    path = tmp_path / "model.onnx"
    onnx.save(model, path, save_as_external_data=True, location="model.weights", size_threshold=0)
    assert (tmp_path / "model.weights").is_file()
    _check(onnx.load(path), feeds, path)
