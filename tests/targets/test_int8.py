"""The cpu target's int8 GEMM (hamr_igemm: u8/s8 operands, int32 accumulation, VNNI where present) through
MatMulInteger, QLinearMatMul, ConvInteger and QLinearConv, on the host's best ISA build and on the portable
baseline build, against NumPy's exact integer arithmetic and onnx.reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr
from hamr.errors import HamrError

RNG = np.random.default_rng(13)
ONNX_TYPE = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8, "int32": TensorProto.INT32}


def ints(dtype, *shape):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def model_of(node, inputs: dict, weights: dict, out_type: str, opset: int = 21):
    """A one-node model: `inputs` become graph inputs, `weights` initializers."""
    graph = helper.make_graph(
        [node],
        node.op_type.lower(),
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for n, v in inputs.items()
        ],
        [helper.make_tensor_value_info("y", ONNX_TYPE[out_type], None)],
        [numpy_helper.from_array(v, n) for n, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_cpu(model, feeds):
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    assert session.executable.variants["cpu"]["fallback"] == {}
    return session.run(feeds)["y"]


def reference(model, feeds):
    return ReferenceEvaluator(model).run(None, feeds)[0]


@pytest.mark.parametrize("const_b", [True, False], ids=["packed-at-load", "packed-per-run"])
@pytest.mark.parametrize(
    "m, n, k, a_type, b_type",
    [(1, 1, 1, "uint8", "int8"), (130, 7, 3, "uint8", "int8")]
    + [
        (m, n, k, a_type, b_type)
        for m, n, k in [(7, 33, 130), (13, 65, 257)]
        for a_type, b_type in [("uint8", "int8"), ("int8", "int8"), ("uint8", "uint8"), ("int8", "uint8")]
    ],
)
def test_matmul_integer(level, m, n, k, a_type, b_type, const_b):
    a, b = ints(a_type, m, k), ints(b_type, k, n)
    za, zb = ints(a_type, m), ints(b_type, n)  # per row of A, per column of B
    node = helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"])
    weights = {"za": za, "zb": zb} | ({"b": b} if const_b else {})
    inputs = {"a": a} | ({} if const_b else {"b": b})
    y = run_cpu(model_of(node, inputs, weights, "int32"), inputs)
    expected = (a.astype(np.int64) - za[:, None]) @ (b.astype(np.int64) - zb[None, :])
    np.testing.assert_array_equal(y, expected.astype(np.int32))


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((2, 3, 5, 17), (17, 9)),
        ((3, 4, 18), (3, 18, 5)),
        ((2, 1, 7, 9), (3, 9, 5)),
        ((3, 0, 5), (5, 4)),
        ((4, 0), (0, 6)),
    ],
)
def test_matmul_integer_batched_scalar_zero_points(level, a_shape, b_shape):
    a, b = ints("uint8", *a_shape), ints("int8", *b_shape)
    za, zb = np.array(131, np.uint8), np.array(-3, np.int8)
    node = helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"])
    model = model_of(node, {"a": a}, {"b": b, "za": za, "zb": zb}, "int32")
    np.testing.assert_array_equal(run_cpu(model, {"a": a}), reference(model, {"a": a}))


def test_matmul_integer_without_zero_points(level):
    a, b = ints("int8", 11, 40), ints("int8", 40, 21)
    model = model_of(helper.make_node("MatMulInteger", ["a", "b"], ["y"]), {"a": a, "b": b}, {}, "int32")
    np.testing.assert_array_equal(run_cpu(model, {"a": a, "b": b}), a.astype(np.int32) @ b.astype(np.int32))


@pytest.mark.parametrize("per_column", [False, True], ids=["per-tensor", "per-column"])
@pytest.mark.parametrize("a_type, b_type, y_type", [("uint8", "int8", "uint8"), ("int8", "int8", "int8")])
@pytest.mark.parametrize("m, n, k", [(1, 5, 3), (9, 33, 70), (40, 64, 129)])
def test_qlinear_matmul(level, m, n, k, a_type, b_type, y_type, per_column):
    a, b = ints(a_type, m, k), ints(b_type, k, n)
    cols = (n,) if per_column else ()
    weights = {
        "sa": np.array(0.02, np.float32),
        "za": ints(a_type),
        "b": b,
        "sb": RNG.uniform(0.001, 0.01, cols).astype(np.float32),
        "zb": ints(b_type, *cols) // 8,
        "sy": np.array(0.35 * k**0.5 / 64, np.float32),
        "zy": ints(y_type) // 4,
    }
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])
    model = model_of(node, {"a": a}, weights, y_type)
    y, expected = run_cpu(model, {"a": a}), reference(model, {"a": a})
    assert y.dtype == expected.dtype
    np.testing.assert_array_equal(y, expected)


CONV_CASES = {
    "3x3-pad": dict(x=(1, 3, 9, 11), w=(8, 3, 3, 3), pads=[1, 1, 1, 1]),
    "strided-dilated": dict(x=(2, 4, 13, 10), w=(6, 4, 3, 2), strides=[2, 1], dilations=[2, 1], pads=[2, 0, 1, 1]),
    "grouped": dict(x=(1, 6, 7, 7), w=(9, 2, 3, 3), group=3, pads=[1, 1, 1, 1]),
    "1x1": dict(x=(2, 5, 6, 7), w=(16, 5, 1, 1)),
    "1-d": dict(x=(1, 4, 30), w=(5, 4, 5), strides=[3]),
    "same-upper": dict(x=(1, 2, 8, 8), w=(4, 2, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2]),
}


def conv_attrs(case: dict) -> dict:
    return {key: value for key, value in case.items() if key not in ("x", "w")}


@pytest.mark.parametrize("case", CONV_CASES, ids=list(CONV_CASES))
@pytest.mark.parametrize("x_type, w_type", [("uint8", "int8"), ("int8", "uint8")])
def test_conv_integer(level, case, x_type, w_type):
    spec = CONV_CASES[case]
    x, w = ints(x_type, *spec["x"]), ints(w_type, *spec["w"])
    per_channel = len(spec["w"]) == 4  # onnx.reference's ConvInteger expands a per-channel zero point to 4-D only
    weights = {"w": w, "zx": ints(x_type), "zw": ints(w_type, *spec["w"][:per_channel])}
    node = helper.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["y"], **conv_attrs(spec))
    model = model_of(node, {"x": x}, weights, "int32")
    np.testing.assert_array_equal(run_cpu(model, {"x": x}), reference(model, {"x": x}))


@pytest.mark.parametrize("case", CONV_CASES, ids=list(CONV_CASES))
@pytest.mark.parametrize("x_type, w_type, with_bias", [("uint8", "int8", True), ("int8", "int8", False)])
def test_qlinear_conv(level, case, with_bias, x_type, w_type):
    spec = CONV_CASES[case]
    x, w = ints(x_type, *spec["x"]), ints(w_type, *spec["w"])
    m, fan_in = spec["w"][0], int(np.prod(spec["w"][1:]))
    channels = (m,) if len(spec["w"]) == 4 else ()  # onnx.reference's per-channel w_scale is 4-D only
    weights = {
        "sx": np.array(0.03, np.float32),
        "zx": ints(x_type) // 2,
        "w": w,
        "sw": RNG.uniform(0.002, 0.02, channels).astype(np.float32),
        "zw": np.zeros(channels, np.dtype(w_type)),
        "sy": np.array(0.4 * fan_in**0.5, np.float32),
        "zy": ints(x_type) // 4,
    }
    names = ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"]
    if with_bias:
        weights["bias"] = RNG.integers(-5000, 5000, m).astype(np.int32)
        names.append("bias")
    node = helper.make_node("QLinearConv", names, ["y"], **conv_attrs(spec))
    model = model_of(node, {"x": x}, weights, x_type)
    np.testing.assert_array_equal(run_cpu(model, {"x": x}), reference(model, {"x": x}))


def test_dynamically_quantized_mlp_matches_onnxruntime(level, tmp_path):
    """quantize_dynamic's graph: DynamicQuantizeLinear, MatMulInteger with Cast, the scales' Mul and the bias Add
    fused into its epilogue."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    d, h = 48, 70
    weights = {
        "w1": RNG.standard_normal((d, h)).astype(np.float32) / d**0.5,
        "b1": RNG.standard_normal(h).astype(np.float32),
        "w2": RNG.standard_normal((h, d)).astype(np.float32) / h**0.5,
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, d])],
        [numpy_helper.from_array(v, n) for n, v in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "f32.onnx")
    quantize_dynamic(tmp_path / "f32.onnx", tmp_path / "int8.onnx", weight_type=QuantType.QInt8)
    model = onnx.load(tmp_path / "int8.onnx")
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {n.op_type for n in model.graph.node}
    x = RNG.standard_normal((2, 5, d)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(run_cpu(model, {"x": x}), expected[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shift", [0.0, 3.0, -3.0], ids=["centred", "positive", "negative"])
def test_dynamic_quantize_large_tensor(level, shift):
    """Large enough for the range and the quantization to run across the OpenMP threads."""
    x = (RNG.standard_normal((300, 211)) + shift).astype(np.float32)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    graph = helper.make_graph(
        [node],
        "dql",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(n, t, None) for n, t in (("y", 2), ("s", 1), ("z", 2))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    assert session.executable.variants["cpu"]["fallback"] == {}
    got = session.run({"x": x})
    for name, expected in zip(("y", "s", "z"), ReferenceEvaluator(model).run(None, {"x": x})):
        np.testing.assert_array_equal(got[name], expected)


def test_zero_point_of_the_wrong_length_is_one_error_line():
    a, b = ints("uint8", 4, 6), ints("int8", 6, 3)
    node = helper.make_node("MatMulInteger", ["a", "b", "za"], ["y"])
    model = model_of(node, {"a": a}, {"b": b, "za": ints("uint8", 3)}, "int32")
    with pytest.raises(HamrError) as error:
        run_cpu(model, {"a": a})
    assert "zero point" in str(error.value) and "\n" not in str(error.value)
