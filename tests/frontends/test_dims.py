"""Shapes as exporters write them and onnxruntime reads them: `dim_value: -1` is dynamic, and a `dim_param` name
repeated on one tensor's axes (`[-1, 3, '?', '?']`) leaves those axes free to differ."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir.passes.common as common
import pytest
from onnx import TensorProto, helper

import hamr
from hamr.frontends.onnx_model import import_onnx
from tests.helpers import DEVICES, hamr_cli, require


def _shape(*dims) -> onnx.TypeProto:
    return helper.make_tensor_type_proto(TensorProto.FLOAT, list(dims))


def exported_model() -> onnx.ModelProto:
    """Relu, a transpose of the last two axes and a mean over the last one, with the exporter's shapes:
    a batch of -1 and height and width both named '?'."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 1, 3, 2]),
        helper.make_node("ReduceMean", ["t"], ["y"], axes=[3], keepdims=1),
    ]
    x = helper.make_value_info("x", _shape(-1, 3, "?", "?"))
    y = helper.make_value_info("y", _shape(-1, 3, "?", 1))
    t = helper.make_value_info("t", _shape(-1, 3, "?", "?"))
    graph = helper.make_graph(nodes, "exported", [x], [y], value_info=[t])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def expected(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0).transpose(0, 1, 3, 2).mean(axis=3, keepdims=True)


X = np.random.default_rng(11).standard_normal((1, 3, 48, 192)).astype(np.float32)


@pytest.mark.parametrize("device", [*DEVICES, "reference"])
def test_a_repeated_dim_param_and_a_negative_dim_run_with_axes_that_differ(device):
    targets = ["reference"] if device == "reference" else [device.split(":")[0]]
    exe = hamr.load(hamr.compile(exported_model(), targets=targets).to_bytes())
    session = hamr.Session(exe, device="cpu" if device == "reference" else device)
    for x in (X, X[:, :, :20, :7].copy(), np.concatenate([X, X])[:, :, :5, :9].copy()):
        np.testing.assert_allclose(session.run({"x": x})["y"], expected(x), rtol=1e-5, atol=1e-6)
    assert "input 'x': axis 0 (-1), axis 3 ('?') left free" in exe.source["import"]


def test_onnxruntime_reads_the_same_shapes_alike():
    ort = require("onnxruntime")
    session = ort.InferenceSession(exported_model().SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": X})[0], expected(X), rtol=1e-5, atol=1e-6)


def test_the_callers_model_is_not_changed():
    model = exported_model()
    before = model.SerializeToString()
    hamr.compile(model, targets=["reference"])
    assert model.SerializeToString() == before


def test_a_name_shared_by_two_inputs_still_ties_them():
    a = helper.make_value_info("a", _shape("n", 4))
    b = helper.make_value_info("b", _shape("n", 4))
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "tied", [a, b], [helper.make_value_info("c", _shape("n", 4))]
    )
    exe = hamr.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), targets=["reference"])
    ones = np.ones((2, 4), np.float32)
    with pytest.raises(hamr.InputError, match="n=3"):
        hamr.Session(exe, device="cpu").run({"a": ones, "b": np.ones((3, 4), np.float32)})


def test_hamr_inspect_says_which_dimensions_were_left_free(tmp_path):
    onnx.save(exported_model(), tmp_path / "exported.onnx")
    compiled = hamr_cli(
        "compile", tmp_path / "exported.onnx", "-o", tmp_path / "exported.hamr", "--target", "reference"
    )
    assert compiled.returncode == 0, compiled.stderr
    shown = hamr_cli("inspect", tmp_path / "exported.hamr", env=None)
    assert shown.returncode == 0, shown.stderr
    assert "input 'x': axis 0 (-1), axis 3 ('?') left free" in " ".join(shown.stdout.split())


def test_a_negative_dim_of_an_intermediate_or_output_is_the_inputs_dim_after_shape_inference():
    """The version converter writes the input's -1 batch on every tensor: it is inferred, not freed again."""
    model, _ = import_onnx(exported_model())
    values = {v.name: v for n in model.graph for v in n.outputs}
    common.ShapeInferencePass(strict_mode=False)(model)
    batch = model.graph.inputs[0].shape[0]
    assert values["t"].shape[0] == batch
    assert values["y"].shape[0] == batch
