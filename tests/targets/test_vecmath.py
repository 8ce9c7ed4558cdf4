"""The vectorised float math (render/vecmath.py) through real generated kernels, against float64 NumPy/SciPy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import special

import hamr
from tests.helpers import DEVICES

RNG = np.random.default_rng(11)
SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 1e-40, -3e-39, 1.1754944e-38, 1e-30, -1e-12, 1e-7, np.inf, -np.inf, np.nan]
EDGES = [0.5, 0.625, 0.921875, 1.0, 2.0, 3.9, 4.0, 4.1, 9.0, 10.0, 11.0, 20.0, 80.0, 88.7, 88.8, 89.0, 103.0, 104.5]
UNARY = {
    "Exp": np.exp,
    "Log": np.log,
    "Erf": special.erf,
    "Tanh": np.tanh,
    "Sigmoid": special.expit,
    "Softplus": lambda x: np.logaddexp(x, 0.0),
}

# Where the op's own formula rounds in f32 (1 + exp(x), 1 + erf(x)) whatever the exp or erf used
FORMULA_ATOL = {"Softplus": 1.2e-7, "Gelu": 1e-6, "GeluTanh": 1e-6}


def wide_inputs() -> np.ndarray:
    """Special values, both signs of the branch edges, and values spread over every exponent."""
    spread = RNG.standard_normal(4000) * np.exp2(RNG.integers(-130, 8, 4000))
    edges = np.array(EDGES + [np.nextafter(np.float32(e), np.float32(0)) for e in EDGES])
    values = np.concatenate([SPECIAL, edges, -edges, spread, np.linspace(-12, 12, 2001)])
    return values.astype(np.float32)


def unary_model(dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    nodes = [helper.make_node(op, ["x"], [op]) for op in UNARY]
    nodes += [
        helper.make_node("Gelu", ["x"], ["Gelu"]),
        helper.make_node("Gelu", ["x"], ["GeluTanh"], approximate="tanh"),
    ]
    outputs = [helper.make_tensor_value_info(n.output[0], dtype, ["n"]) for n in nodes]
    graph = helper.make_graph(nodes, "vecmath", [helper.make_tensor_value_info("x", dtype, ["n"])], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def expected(x: np.ndarray) -> dict[str, np.ndarray]:
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        out = {op: f(x64) for op, f in UNARY.items()}
        out["Gelu"] = 0.5 * x64 * (1 + special.erf(x64 / np.sqrt(2)))
        inner = np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64**3)
        out["GeluTanh"] = 0.5 * x64 * (1 + np.tanh(inner))
    return out


def session(model: onnx.ModelProto, device: str) -> hamr.Session:
    target = "cpu" if device == "cpu" else "opencl"
    s = hamr.Session(hamr.load(hamr.compile(model, targets=[target]).to_bytes()), device=device)
    assert s.target == target
    assert s.executable.variants[target]["fallback"] == {}
    return s


@pytest.mark.parametrize("device", DEVICES)
def test_f32_math_matches_float64_over_the_whole_range(device):
    x = wide_inputs()
    got = session(unary_model(), device).run({"x": x})
    # the cpu polynomials are within 3e-7 of the float64 value; OpenCL built-ins may be a few ulp off and
    # a device may flush subnormals
    rtol, tiny = (4e-7, 2e-45) if device == "cpu" else (4e-6, 1.2e-38)
    for name, want in expected(x).items():
        with np.errstate(over="ignore"):
            want32 = want.astype(np.float32)  # rounding to f32 (overflow to inf, underflow to subnormals and 0)
        if name == "Softplus":  # log(exp(x) + 1) as the spec writes it: exp overflows above 88.7
            want32 = np.where(x > np.log(np.finfo(np.float32).max), np.inf, want32)
        if device != "cpu" and name.startswith("Gelu"):  # PoCL gives Gelu(-inf) = -inf, not -inf * 0 = NaN
            got[name], want32 = got[name][np.isfinite(x)], want32[np.isfinite(x)]
        atol = FORMULA_ATOL[name] * (1 if device == "cpu" else 10) if name in FORMULA_ATOL else tiny
        np.testing.assert_allclose(got[name], want32, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)
    assert np.signbit(got["Erf"][1]) and np.signbit(got["Tanh"][1])  # x[1] is -0.0


def test_f64_math_keeps_libm():
    x = wide_inputs().astype(np.float64) * 1.0000001
    got = session(unary_model(TensorProto.DOUBLE), "cpu").run({"x": x})
    for name, want in expected(x).items():
        atol = 1e-15 if name in FORMULA_ATOL else 1e-300
        np.testing.assert_allclose(got[name], want, rtol=1e-13, atol=atol, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_gelu_epilogue_fused_after_matmul(device):
    """The exported GELU (Div, Erf, Add, Mul, Mul) after a MatMul runs as the GEMM's epilogue."""
    w = (RNG.standard_normal((48, 80)) * 0.2).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        helper.make_node("Div", ["y", "s2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["y", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["g"]),
    ]
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array(np.sqrt(2), np.float32), "s2"),
        numpy_helper.from_array(np.array(1, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    graph = helper.make_graph(
        nodes,
        "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [33, 48])],
        [helper.make_tensor_value_info("g", TensorProto.FLOAT, [33, 80])],
        inits,
    )
    s = session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), device)
    x = RNG.standard_normal((33, 48)).astype(np.float32)
    y = x.astype(np.float64) @ w.astype(np.float64)
    want = 0.5 * y * (1 + special.erf(y / np.sqrt(2)))
    np.testing.assert_allclose(s.run({"x": x})["g"], want, rtol=1e-5, atol=1e-6)
    if device == "cpu":
        assert [k["ops"] for k in s.executable.variants["cpu"]["kernels"]] == ["gemm+Div+Erf+Add+Mul+Mul"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [1e-30, 1.0, 30.0, 200.0])
def test_softmax_rows_over_wide_spreads(device, scale):
    x = (RNG.standard_normal((5, 7, 300)) * scale).astype(np.float32)
    x[0, 0, :3] = [-np.inf, 0, -np.inf]
    nodes = [helper.make_node("Softmax", ["x"], ["s"]), helper.make_node("LogSoftmax", ["x"], ["l"])]
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [5, 7, 300]) for n in "xsl"]
    graph = helper.make_graph(nodes, "softmax", info[:1], info[1:])
    got = session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), device).run({"x": x})
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(got["s"], special.softmax(x64, axis=-1), rtol=1e-5, atol=1.2e-38)
    np.testing.assert_allclose(got["l"], special.log_softmax(x64, axis=-1), rtol=1e-5, atol=1e-6)
