"""float16, bfloat16, float8, float4 and int4/int2 on the native targets: storage in bits, arithmetic in f32.

Every check runs the real path (compile the ONNX model, load the .hamr bytes, run on the
device) with every node native, and compares bit for bit with numpy, ml_dtypes or onnx.reference.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import hamr
from hamr.errors import HamrError
from tests.helpers import DEVICES

F16_BITS = np.arange(65536, dtype=np.uint16)
F16_ALL = F16_BITS.view(np.float16)
# f32 values whose top half is every bf16 / f16-relevant pattern, with low halves at and around the ties
F32_MANY = np.concatenate(
    [(F16_BITS.astype(np.uint32) << 16 | low).view(np.float32) for low in (0, 0x8000, 0x7FFF, 0x8001, 0x1000, 0xFFFF)]
)
FLOAT8 = {
    "float8_e4m3fn": TP.FLOAT8E4M3FN,
    "float8_e4m3fnuz": TP.FLOAT8E4M3FNUZ,
    "float8_e5m2": TP.FLOAT8E5M2,
    "float8_e5m2fnuz": TP.FLOAT8E5M2FNUZ,
}


def target_of(device: str) -> str:
    return "cpu" if device == "cpu" else "opencl"


def build(nodes, inputs, outputs, inits=(), opset=21) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_native(model: onnx.ModelProto, device: str, feeds: dict) -> dict:
    target = target_of(device)
    exe = hamr.load(hamr.compile(model, targets=[target]).to_bytes())
    assert exe.variants[target]["fallback"] == {}
    assert set(exe.variants[target]["placement"].values()) == {target}
    return hamr.Session(exe, device=device).run(feeds)


def reference(model: onnx.ModelProto, feeds: dict) -> list:
    return ReferenceEvaluator(model).run(None, feeds)


def cast_model(src: int, dst: int, n: int, saturate: int | None = None) -> onnx.ModelProto:
    attrs = {"to": dst} if saturate is None else {"to": dst, "saturate": saturate}
    return build(
        [helper.make_node("Cast", ["x"], ["y"], **attrs)],
        [helper.make_tensor_value_info("x", src, [n])],
        [helper.make_tensor_value_info("y", dst, [n])],
    )


def cast(src: int, dst: int, x: np.ndarray, device: str, saturate: int | None = None) -> np.ndarray:
    return run_native(cast_model(src, dst, x.size, saturate), device, {"x": x})["y"]


def same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    width = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[expected.dtype.itemsize]
    got, want = actual.view(width), expected.view(width)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{bad.size} differ, first at {bad[:4]}: {got[bad[:4]]} != {want[bad[:4]]}"


def same_bits_or_nan(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal bits, except that any NaN matches any NaN (numpy and C disagree on NaN payloads)."""
    nan = np.isnan(expected.astype(np.float32))
    assert np.array_equal(np.isnan(actual.astype(np.float32)), nan)
    same_bits(actual[~nan], expected[~nan])


@pytest.mark.parametrize("device", DEVICES)
def test_every_float16_widens_exactly(device):
    # NaNs stay NaNs; the F16C instructions quiet a signalling one, numpy keeps its payload
    same_bits_or_nan(cast(TP.FLOAT16, TP.FLOAT, F16_ALL, device), F16_ALL.astype(np.float32))
    same_bits_or_nan(cast(TP.FLOAT16, TP.DOUBLE, F16_ALL, device), F16_ALL.astype(np.float64))


@pytest.mark.parametrize("device", DEVICES)
def test_float32_rounds_to_float16_and_bfloat16_to_nearest_even(device):
    with np.errstate(over="ignore", invalid="ignore"):
        f16, bf16 = F32_MANY.astype(np.float16), F32_MANY.astype(ml_dtypes.bfloat16)
    same_bits_or_nan(cast(TP.FLOAT, TP.FLOAT16, F32_MANY, device), f16)
    same_bits_or_nan(cast(TP.FLOAT, TP.BFLOAT16, F32_MANY, device), bf16)
    bf16_all = F16_BITS.view(ml_dtypes.bfloat16)
    same_bits(cast(TP.BFLOAT16, TP.FLOAT, bf16_all, device), bf16_all.astype(np.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_float64_rounds_once_not_through_float32(device):
    # just above and below every float16 tie: through f32 they would land on the tie and round to even
    ties = (F16_ALL[:0x7BFF].astype(np.float64) + F16_ALL[1:0x7C00].astype(np.float64)) / 2
    ties = ties[np.isfinite(ties) & (ties > 0)]
    x = np.concatenate([ties * (1 + 2.0**-40), ties * (1 - 2.0**-40), -ties * (1 + 2.0**-40)])
    with np.errstate(over="ignore"):
        same_bits(cast(TP.DOUBLE, TP.FLOAT16, x, device), x.astype(np.float16))
        same_bits(cast(TP.DOUBLE, TP.BFLOAT16, x, device), x.astype(ml_dtypes.bfloat16))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(FLOAT8))
def test_float8_decodes_every_byte_and_encodes_like_onnx_reference(device, name):
    every = np.arange(256, dtype=np.uint8).view(np.dtype(name))
    same_bits_or_nan(cast(FLOAT8[name], TP.FLOAT, every, device), every.astype(np.float32))
    finite = F16_ALL[np.isfinite(F16_ALL)]
    for saturate in (0, 1):
        model = cast_model(TP.FLOAT16, FLOAT8[name], finite.size, saturate)
        expected = reference(model, {"x": finite})[0]
        same_bits(run_native(model, device, {"x": finite})["y"], expected)


@pytest.mark.parametrize("device", DEVICES)
def test_float4_and_small_integers_cast_like_onnx_reference(device):
    x = np.array(
        [-20, -9, -8.6, -8, -7.5, -2.5, -0.5, 0, 0.25, 0.5, 1.5, 2.5, 3.1, 6, 7.6, 8, 15.5, 16, 100], np.float32
    )
    for dst in (TP.FLOAT4E2M1, TP.INT4, TP.UINT4, TP.INT2, TP.UINT2):
        model = cast_model(TP.FLOAT, dst, x.size)
        same_bits(run_native(model, device, {"x": x})["y"], reference(model, {"x": x})[0])
    wide = np.arange(-20, 20, dtype=np.int8)
    model = cast_model(TP.INT8, TP.INT4, wide.size)
    same_bits(run_native(model, device, {"x": wide})["y"], reference(model, {"x": wide})[0])
    nibbles = np.arange(16, dtype=np.uint8)
    for src, dtype in (
        (TP.INT4, ml_dtypes.int4),
        (TP.UINT4, ml_dtypes.uint4),
        (TP.FLOAT4E2M1, ml_dtypes.float4_e2m1fn),
    ):
        values = nibbles.view(dtype)
        same_bits(cast(src, TP.FLOAT, values, device), values.astype(np.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_float16_elementwise_chain_rounds_after_every_op(device):
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((33, 17)) * 3).astype(np.float16)
    b = (rng.standard_normal(17) * 3).astype(np.float16)
    model = build(
        [
            helper.make_node("Add", ["a", "b"], ["s"]),
            helper.make_node("Mul", ["s", "s"], ["m"]),
            helper.make_node("Sqrt", ["m"], ["r"]),
            helper.make_node("Max", ["r", "a"], ["y"]),
        ],
        [
            helper.make_tensor_value_info("a", TP.FLOAT16, [33, 17]),
            helper.make_tensor_value_info("b", TP.FLOAT16, [17]),
        ],
        [helper.make_tensor_value_info("y", TP.FLOAT16, [33, 17])],
    )
    same_bits(run_native(model, device, {"a": a, "b": b})["y"], reference(model, {"a": a, "b": b})[0])


def without(attrs: dict, name: str) -> dict:
    return {k: v for k, v in attrs.items() if k != name}


def quantize_model(x_shape, scale, zero_point, out_type: int, **attrs) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(scale, "s")]
    names = ["x", "s"]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(zero_point, "z"))
        names.append("z")
    return build(
        [
            helper.make_node("QuantizeLinear", names, ["q"], **attrs),
            helper.make_node("DequantizeLinear", ["q", *names[1:]], ["y"], **without(attrs, "saturate")),
        ],
        [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(scale.dtype), x_shape)],
        [
            helper.make_tensor_value_info("q", out_type, x_shape),
            helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(scale.dtype), x_shape),
        ],
        inits,
    )


QUANT_CASES = {
    "per_tensor_uint8": ((2, 3, 5), np.float32(0.05), np.uint8(128), TP.UINT8, {}),
    "per_axis_int8": (
        (2, 3, 5),
        np.array([0.02, 0.05, 0.1], np.float32),
        np.array([-3, 0, 4], np.int8),
        TP.INT8,
        {"axis": 1},
    ),
    "blocked_int4": (
        (2, 6, 4),
        np.array([[0.2, 0.3, 0.5, 0.7]] * 2, np.float32).reshape(2, 1, 4).repeat(2, axis=1),
        np.array([[1, -2, 0, 3]] * 4, ml_dtypes.int4).reshape(2, 2, 4),
        TP.INT4,
        {"axis": 1, "block_size": 3},
    ),
    "per_axis_uint16_last": (
        (4, 3),
        np.array([0.01, 0.5, 2.0], np.float32),
        np.array([10, 30000, 0], np.uint16),
        TP.UINT16,
        {"axis": -1},
    ),
    "float16_int16": ((3, 7), np.float16(0.125), np.int16(-5), TP.INT16, {}),
    "e4m3fn_saturating": ((3, 7), np.float32(0.01), np.zeros((), ml_dtypes.float8_e4m3fn), TP.FLOAT8E4M3FN, {}),
    "e5m2_unsaturated": (
        (3, 7),
        np.float32(0.001),
        np.zeros((), ml_dtypes.float8_e5m2),
        TP.FLOAT8E5M2,
        {"saturate": 0},
    ),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(QUANT_CASES))
def test_quantize_dequantize_match_onnx_reference(device, case):
    shape, scale, zero_point, out_type, attrs = QUANT_CASES[case]
    model = quantize_model(
        list(shape), np.asarray(scale), None if zero_point is None else np.asarray(zero_point), out_type, **attrs
    )
    x = (np.random.default_rng(2).standard_normal(shape) * 20).astype(np.asarray(scale).dtype)
    big = 8000.0 if x.dtype == np.float16 else 1e6  # finite quotients: numpy casts inf to INT_MIN
    x.flat[0], x.flat[1] = big, -big  # saturate both ends
    got = run_native(model, device, {"x": x})
    want = reference(model, {"x": x})
    same_bits(got["q"], want[0])
    same_bits(got["y"], want[1])


@pytest.mark.parametrize("device", DEVICES)
def test_dynamic_quantize_matches_onnx_reference(device):
    model = build(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])],
        [helper.make_tensor_value_info("x", TP.FLOAT, [5, 40])],
        [
            helper.make_tensor_value_info(n, t, s)
            for n, t, s in (("y", TP.UINT8, [5, 40]), ("s", TP.FLOAT, []), ("z", TP.UINT8, []))
        ],
    )
    for x in (
        np.random.default_rng(4).standard_normal((5, 40)).astype(np.float32) * 3,
        np.full((5, 40), 2.5, np.float32),
    ):
        got = run_native(model, device, {"x": x})
        for name, want in zip("ysz", reference(model, {"x": x})):
            same_bits(np.asarray(got[name]), np.asarray(want))


def test_a_scale_that_fits_no_axis_is_one_clear_error():
    model = quantize_model([2, 3], np.array([0.1, 0.2], np.float32), np.array([0, 0], np.uint8), TP.UINT8, axis=1)
    exe = hamr.load(hamr.compile(model, targets=["cpu"]).to_bytes())
    with pytest.raises(HamrError, match="does not fit axis 1"):
        hamr.Session(exe, device="cpu").run({"x": np.zeros((2, 3), np.float32)})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "elem", [TP.FLOAT16, TP.BFLOAT16, TP.FLOAT8E4M3FN, TP.INT4], ids=["float16", "bfloat16", "e4m3fn", "int4"]
)
def test_movement_copies_storage_bits(device, elem):
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    x = (np.arange(24) % 15 - 7).reshape(2, 3, 4).astype(dtype)
    model = build(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[2, 0, 1]),
            helper.make_node("Reshape", ["t", "shape"], ["r"]),
            helper.make_node("Concat", ["r", "r"], ["c"], axis=0),
            helper.make_node("Gather", ["c", "idx"], ["g"], axis=1),
            helper.make_node("Pad", ["x", "pads", "pv"], ["p"]),
            helper.make_node("Slice", ["p", "starts", "ends"], ["s"]),
        ],
        [helper.make_tensor_value_info("x", elem, [2, 3, 4])],
        [helper.make_tensor_value_info("g", elem, [8, 2]), helper.make_tensor_value_info("s", elem, [2, 4, 6])],
        [
            numpy_helper.from_array(np.array([4, 6], np.int64), "shape"),
            numpy_helper.from_array(np.array([0, 1, 0, 0, 0, 2], np.int64), "pads"),
            numpy_helper.from_array(np.array([2, 0], np.int64), "idx"),
            numpy_helper.from_array(np.array(3, dtype), "pv"),
            numpy_helper.from_array(np.array([1], np.int64), "starts"),
            numpy_helper.from_array(np.array([5], np.int64), "ends"),
        ],
    )
    got = run_native(model, device, {"x": x})
    for name, want in zip("gs", reference(model, {"x": x})):
        same_bits(got[name], want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("elem", [TP.FLOAT16, TP.BFLOAT16], ids=["float16", "bfloat16"])
def test_ops_without_storage_kernels_run_on_float32_copies(device, elem):
    """MatMul, ReduceMax, ReduceSum and LayerNormalization have f32 kernels only: they run between Casts."""
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    rng = np.random.default_rng(8)
    model = build(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Relu", ["m"], ["r"]),
            helper.make_node("ReduceMax", ["r", "axes"], ["s"], keepdims=1),
            helper.make_node("ReduceSum", ["r", "axes"], ["t"], keepdims=1),
            helper.make_node("Div", ["s", "t"], ["y"]),
            helper.make_node("LayerNormalization", ["m", "scale", "bias"], ["z"], axis=-1),
        ],
        [helper.make_tensor_value_info("x", elem, ["n", 16])],
        [helper.make_tensor_value_info("y", elem, ["n", 1]), helper.make_tensor_value_info("z", elem, ["n", 8])],
        [
            numpy_helper.from_array((rng.standard_normal((16, 8)) * 0.3).astype(dtype), "w"),
            numpy_helper.from_array(np.array([-1], np.int64), "axes"),
            numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(dtype), "scale"),
            numpy_helper.from_array(rng.standard_normal(8).astype(dtype), "bias"),
        ],
    )
    x = rng.standard_normal((5, 16)).astype(dtype)
    got = run_native(model, device, {"x": x})
    ulp = 2.0**-10 if elem == TP.FLOAT16 else 2.0**-7  # the reference rounds after every op, hamr once at the end
    for name, want in zip("yz", reference(model, {"x": x})):
        assert got[name].dtype == want.dtype
        np.testing.assert_allclose(got[name].astype(np.float32), want.astype(np.float32), rtol=4 * ulp, atol=4 * ulp)
