"""Conv + BatchNormalization folding: the folded model runs as the original does under onnx.reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr
from hamr.ir.passes.fold_batchnorm import FoldBatchNormIntoConvPass

RNG = np.random.default_rng(5)


def conv_bn_model(with_bias: bool, bn_output_is_graph_output: bool, conv_output_used_twice: bool = False):
    c, m = 3, 4
    inits = [
        numpy_helper.from_array(RNG.standard_normal((m, c, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(RNG.uniform(0.5, 2, m).astype(np.float32), "scale"),
        numpy_helper.from_array(RNG.standard_normal(m).astype(np.float32), "beta"),
        numpy_helper.from_array(RNG.standard_normal(m).astype(np.float32), "mean"),
        numpy_helper.from_array(RNG.uniform(0.5, 2, m).astype(np.float32), "var"),
    ]
    conv_inputs = ["x", "w"]
    if with_bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal(m).astype(np.float32), "b"))
        conv_inputs.append("b")
    nodes = [
        helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "beta", "mean", "var"], ["n"], epsilon=1e-3),
    ]
    outputs = [helper.make_tensor_value_info("n", TensorProto.FLOAT, [1, m, 6, 5])]
    if not bn_output_is_graph_output:
        nodes.append(helper.make_node("Relu", ["n"], ["y"]))
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m, 6, 5])]
    if conv_output_used_twice:
        nodes.append(helper.make_node("Neg", ["c"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, m, 6, 5]))
    graph = helper.make_graph(
        nodes, "conv_bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 6, 5])], outputs, inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("bn_output_is_graph_output", [True, False])
def test_batchnorm_is_folded_into_the_conv(with_bias, bn_output_is_graph_output):
    model = conv_bn_model(with_bias, bn_output_is_graph_output)
    x = RNG.standard_normal((1, 3, 6, 5)).astype(np.float32)
    expected = ReferenceEvaluator(model).run(None, {"x": x})
    exe = hamr.compile(model, targets=["cpu"])
    assert [n.op_type for n in exe.model.graph] == ["Conv"] + ([] if bn_output_is_graph_output else ["Relu"])
    session = hamr.Session(exe, device="cpu")
    got = session.run({"x": x})
    name = "n" if bn_output_is_graph_output else "y"
    np.testing.assert_allclose(got[name], expected[0], rtol=1e-4, atol=1e-5)
    if not bn_output_is_graph_output:
        assert [k["ops"] for k in exe.variants["cpu"]["kernels"]] == ["conv+Relu"]


def test_a_conv_output_read_elsewhere_keeps_its_weights_and_the_batchnorm_becomes_mul_add():
    model = ir.from_proto(onnx.shape_inference.infer_shapes(conv_bn_model(True, True, conv_output_used_twice=True)))
    assert FoldBatchNormIntoConvPass()(model).modified
    assert [n.op_type for n in model.graph] == ["Conv", "Mul", "Add", "Neg"]
    assert [v.name for v in model.graph.outputs] == ["n", "z"]


def test_weights_and_bias_computed_at_load_are_scaled_by_nodes_run_at_load():
    m, c = 4, 3
    w = RNG.standard_normal((m, c, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32)
    params = [RNG.uniform(0.5, 2, m), RNG.standard_normal(m), RNG.standard_normal(m), RNG.uniform(0.5, 2, m)]
    inits = [numpy_helper.from_array(p.astype(np.float32), n) for p, n in zip(params, ["s", "beta", "mean", "var"])]
    inits += [numpy_helper.from_array(w, "w0"), numpy_helper.from_array(b, "b0")]
    nodes = [
        helper.make_node("Neg", ["w0"], ["w"]),
        helper.make_node("Neg", ["b0"], ["b"]),
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "s", "beta", "mean", "var"], ["y"]),
    ]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 5, 5])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m, 3, 3])
    proto = helper.make_model(
        helper.make_graph(nodes, "load", [x_info], [y_info], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model = ir.from_proto(onnx.shape_inference.infer_shapes(proto))
    assert FoldBatchNormIntoConvPass()(model).modified
    assert [n.op_type for n in model.graph] == ["Neg", "Neg", "Mul", "Mul", "Add", "Conv"]
    x = RNG.standard_normal((1, c, 5, 5)).astype(np.float32)
    folded = ReferenceEvaluator(ir.serde.serialize_model(model)).run(None, {"x": x})[0]
    np.testing.assert_allclose(folded, ReferenceEvaluator(proto).run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
