"""float32 Conv with a few output positions per image (`hamr_conv_few` of render/conv_c.py), on the host's best ISA
build and on the portable baseline, against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr

RNG = np.random.default_rng(5)


def conv_model(x_shape, w_shape, relu: bool, **attrs):
    w = RNG.standard_normal(w_shape).astype(np.float32)
    b = RNG.standard_normal(w_shape[0]).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if relu else "y"], **attrs)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


CASES = {
    "1col-k3-pad": ((1, 64, 1), (128, 64, 3), dict(pads=[1, 1])),
    "2col-stride2": ((1, 128, 4), (64, 128, 3), dict(pads=[1, 1], strides=[2])),
    "4col-stft": ((1, 1, 640), (258, 1, 256), dict(strides=[128])),
    "3col-batch-dil": ((2, 5, 9), (7, 5, 3), dict(dilations=[3])),
    "8col-groups": ((1, 12, 8), (6, 4, 3), dict(pads=[1, 1], group=3)),
    "5col-depthwise": ((1, 6, 5), (6, 1, 3), dict(pads=[2, 0], group=6)),
    "2d-2x2": ((1, 3, 4, 4), (17, 3, 3, 3), dict(pads=[0, 1, 1, 0], strides=[2, 2])),
    "k-not-16": ((1, 3, 3), (4, 3, 3), dict()),
    "parallel-rows": ((2, 256, 4), (256, 256, 3), dict(pads=[1, 1])),
}


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_few_column_conv_matches_reference(level, case, relu):
    x_shape, w_shape, attrs = CASES[case]
    model = conv_model(x_shape, w_shape, relu, **attrs)
    x = RNG.standard_normal(x_shape).astype(np.float32)
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    assert session.executable.variants["cpu"]["fallback"] == {}
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    actual = session.run({"x": x})["y"]
    assert actual.shape == expected.shape and 0 < expected.shape[-1] <= 8
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("length", [1, "T", 64], ids=["few", "dynamic", "many"])
def test_conv_loaded_from_a_file_keeps_the_weights_its_path_reads(level, tmp_path, length):
    # a loaded program drops plain weights it holds a packed copy of: the few-column path reads the plain ones
    model = conv_model((1, 64, length), (32, 64, 3), relu=True, pads=[1, 1])
    exe = hamr.load(hamr.compile(model, targets=["cpu"]).save(tmp_path / "conv.hamr"))
    session = hamr.Session(exe, device="cpu")
    reference = ReferenceEvaluator(model)
    for steps in [1, 3] if length == "T" else [length]:
        x = RNG.standard_normal((1, 64, steps)).astype(np.float32)
        got = session.run({"x": x})["y"]
        np.testing.assert_allclose(got, reference.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)
