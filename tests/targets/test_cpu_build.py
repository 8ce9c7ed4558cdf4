"""The cpu target's build: one C function per distinct kernel, flags per ISA level, the cache key, compiler errors."""

from __future__ import annotations

import re
import tempfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from hamr.errors import HamrError
from hamr.targets.cpu import build, isa

pytestmark = pytest.mark.skipif(build.compiler() is None, reason="no C compiler")

RNG = np.random.default_rng(11)
WIDTHS = [64, 48, 48, 32, 16]
WEIGHTS = [RNG.standard_normal((a, b)).astype(np.float32) / 8 for a, b in zip(WIDTHS, WIDTHS[1:], strict=False)]
ACTIVATIONS = ["Relu", "Relu", "Relu", "Sigmoid"]


def chain_model() -> onnx.ModelProto:
    """MatMul+activation four times: three launches of the same fused kernel text (at different shapes), one other."""
    nodes, value = [], "x"
    for i, op in enumerate(ACTIVATIONS):
        nodes += [helper.make_node("MatMul", [value, f"w{i}"], [f"m{i}"]), helper.make_node(op, [f"m{i}"], [f"a{i}"])]
        value = f"a{i}"
    nodes.append(helper.make_node("Identity", [value], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTHS[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTHS[-1]])],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(WEIGHTS)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def expected_chain(x: np.ndarray) -> np.ndarray:
    for w, op in zip(WEIGHTS, ACTIVATIONS, strict=True):
        x = x @ w
        x = np.maximum(x, 0) if op == "Relu" else 1 / (1 + np.exp(-x))
    return x


def test_launches_of_the_same_kernel_text_share_one_c_function(tmp_path, monkeypatch):
    monkeypatch.setenv("HAMR_CACHE_DIR", str(tmp_path))
    exe = hamr.load(hamr.compile(chain_model(), targets=["cpu"]).to_bytes())
    variant = exe.variants["cpu"]
    assert [k["ops"] for k in variant["kernels"]] == ["gemm+Relu"] * 3 + ["gemm+Sigmoid"]
    source = bytes(variant["files"]["kernels.c"]).decode()
    defined = re.findall(r"^static void (hamr_k\d+)\(", source, flags=re.M)
    assert defined == ["hamr_k0", "hamr_k1"]
    entry = source[source.index("void hamr_seg0(") :].split("}\n", 1)[0]
    assert re.findall(r"(hamr_k\d+)\(", entry) == ["hamr_k0", "hamr_k0", "hamr_k0", "hamr_k1"]
    session = hamr.Session(exe, device="cpu")
    for batch in (1, 5):
        x = RNG.standard_normal((batch, WIDTHS[0])).astype(np.float32)
        np.testing.assert_allclose(session.run({"x": x})["y"], expected_chain(x), rtol=1e-4, atol=1e-5)


def test_profiled_runs_still_name_each_launch(tmp_path, monkeypatch):
    monkeypatch.setenv("HAMR_CACHE_DIR", str(tmp_path))
    exe = hamr.load(hamr.compile(chain_model(), targets=["cpu"]).to_bytes())
    session = hamr.Session(exe, device="cpu")
    x = RNG.standard_normal((2, WIDTHS[0])).astype(np.float32)
    outputs = session.run({"x": x}, profile=True)
    np.testing.assert_allclose(outputs["y"], expected_chain(x), rtol=1e-4, atol=1e-5)
    kernels = [e.name for e in session.last_profile.events if e.kind == "kernel"]
    assert kernels == [k["name"] for k in exe.variants["cpu"]["kernels"]]


def test_the_portable_fallback_is_built_with_cheaper_flags():
    levels = isa.host_levels()
    assert build.flags_for(levels[0])[0] == "-O3"
    if len(levels) > 1:
        assert build.flags_for(levels[-1])[0] == "-O2"


def test_build_cache_key_changes_with_flags_and_compiler(monkeypatch):
    level = isa.host_levels()[0]
    key = build.build_key("int x;", level)
    monkeypatch.setattr(build, "BASE_FLAGS", [*build.BASE_FLAGS, "-fno-tree-vectorize"])
    flagged = build.build_key("int x;", level)
    monkeypatch.setattr(build, "compiler_identity", lambda cc: "some other cc 1.0")
    assert len({key, flagged, build.build_key("int x;", level)}) == 3


def test_a_compile_error_is_one_hamr_error_line_and_leaves_no_build_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HAMR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    levels = isa.build_levels()
    with pytest.raises(HamrError) as info:
        build.build_many("void f(void) { int x = ; }\n", levels)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"C compiler failed for the cpu target ({levels[0]}): kernels.c:1:")
    assert "error" in message
    assert not list(tmp_path.glob("hamr-build-*"))
    assert not list((tmp_path / "cache" / "cpu").glob("*.so"))
