"""The native targets (cpu, opencl) end to end: lowering, fallback, plans, the file, the build cache."""

from __future__ import annotations

import platform

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from hamr.targets.native.memory import Buffer, plan_memory
from tests.helpers import DEVICES, native_targets, opencl_devices

RNG = np.random.default_rng(3)
W = RNG.standard_normal((64, 32)).astype(np.float32)
B = RNG.standard_normal(32).astype(np.float32)


def mlp_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Sigmoid", ["r"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def expected_mlp(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.maximum(x @ W + B, 0)))


@pytest.fixture(scope="module")
def mlp_exe():
    targets = native_targets()
    return hamr.load(hamr.compile(mlp_model(), targets=targets).to_bytes())


@pytest.mark.parametrize("device", DEVICES)
def test_dynamic_batch_runs_without_recompiling(mlp_exe, device):
    session = hamr.Session(mlp_exe, device=device)
    assert session.target == ("cpu" if device == "cpu" else "opencl")
    for batch in (1, 7, 130):
        x = RNG.standard_normal((batch, 64)).astype(np.float32)
        y = session.run({"x": x})["y"]
        np.testing.assert_allclose(y, expected_mlp(x), rtol=1e-4, atol=1e-5)
    assert len(session.program.plans) == 3  # one plan per shape, one compiled program


def test_matmul_epilogue_is_fused_into_one_kernel(mlp_exe):
    variant = mlp_exe.variants["cpu"]
    assert [k["ops"] for k in variant["kernels"]] == ["gemm+Add+Relu+Sigmoid"]
    assert set(variant["placement"].values()) == {"cpu"}
    assert variant["fallback"] == {}


def test_one_file_holds_both_isa_builds_and_the_sources(monkeypatch):
    monkeypatch.delenv("HAMR_CPU_ISA", raising=False)  # the suite builds the host level only; hamr compile builds both
    mlp_exe = hamr.load(hamr.compile(mlp_model(), targets=native_targets()).to_bytes())
    levels = mlp_exe.variants["cpu"]["levels"]
    if platform.machine() == "x86_64":  # the host's best level, then the portable baseline
        assert levels[-1] == "x86-64" and (len(levels) == 2 or levels == ["x86-64"])
    assert "kernels.c" in mlp_exe.variants["cpu"]["files"]
    # loaded without trust, the file's shared objects are dropped (built from regenerated source instead)
    assert set(mlp_exe.trust.native) == {f"variants/cpu/{level}.so" for level in levels}
    assert not any(f.endswith(".so") for f in mlp_exe.variants["cpu"]["files"])
    trusted = hamr.load(hamr.compile(mlp_model(), targets=["cpu"]).to_bytes(), trust_binaries=True)
    for level in levels:
        assert bytes(trusted.variants["cpu"]["files"][f"{level}.so"][:4]) == b"\x7fELF"
    if opencl_devices():
        assert b"__kernel" in bytes(mlp_exe.variants["opencl"]["files"]["kernels.cl"])


def test_load_builds_from_the_stored_source_when_no_binary_fits(mlp_exe, tmp_path, monkeypatch):
    monkeypatch.setenv("HAMR_CACHE_DIR", str(tmp_path))
    variant = dict(mlp_exe.variants["cpu"])
    variant["files"] = {"kernels.c": variant["files"]["kernels.c"]}  # as on a host of another ISA
    variant["machine"] = "some-other-isa"
    exe = hamr.Executable(mlp_exe.model, "mlp", mlp_exe.signature, {"cpu": variant})
    x = RNG.standard_normal((2, 64)).astype(np.float32)
    y = hamr.Session(exe, device="cpu").run({"x": x})["y"]
    np.testing.assert_allclose(y, expected_mlp(x), rtol=1e-4, atol=1e-5)
    assert list((tmp_path / "cpu").glob("*.so"))  # built into the content-addressed cache


def test_build_cache_key_covers_source_and_flags():
    from hamr.targets.cpu import build

    key = build.build_key("int x;", "x86-64")
    assert key == build.build_key("int x;", "x86-64")
    assert key != build.build_key("int y;", "x86-64")
    assert key != build.build_key("int x;", "x86-64-v3")


@pytest.mark.parametrize("device", DEVICES)
def test_a_variant_from_a_changed_generator_runs_on_the_kernels_generated_now(mlp_exe, device):
    target = device.split(":")[0]
    if target not in mlp_exe.variants:
        pytest.skip(f"the executable has no {target} variant here")
    variant = dict(mlp_exe.variants[target], source_sha256="0" * 64)
    exe = hamr.Executable(mlp_exe.model, "mlp", mlp_exe.signature, {target: variant})
    x = np.random.default_rng(4).standard_normal((4, 64)).astype(np.float32)
    session = hamr.Session(exe, device=device)
    assert session.target == target
    np.testing.assert_allclose(session.run({"x": x})["y"], expected_mlp(x), rtol=1e-4, atol=1e-5)


def fallback_model() -> onnx.ModelProto:
    """NonZero has a data-dependent output shape: no native lowering, so it falls back."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("NonZero", ["r"], ["nz"]),
        helper.make_node("Cast", ["nz"], ["nzf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["nzf", "two"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("device", DEVICES)
def test_fallback_runs_on_reference_with_host_transfers(device):
    target = "cpu" if device == "cpu" else "opencl"
    exe = hamr.compile(fallback_model(), targets=[target])
    variant = exe.variants[target]
    assert [v["op"] for v in variant["fallback"].values()] == ["NonZero"]
    assert sorted(set(variant["placement"].values())) == sorted({target, "reference"})
    assert variant["segments"] == 2
    session = hamr.Session(exe, device=device)
    for x in ([1, -1, 0, 3, 0, 2], [0, 0, 5, 0, 0, 0]):
        x = np.array(x, np.float32)
        np.testing.assert_array_equal(
            session.run({"x": x})["y"], 2 * np.nonzero(np.maximum(x, 0))[0][None].astype(np.float32)
        )


def test_memory_plan_reuses_dead_buffers_and_works_in_place():
    # a -> b -> c -> d, each 1000 bytes: a dies when b is written, so c can take a's block
    bufs = [Buffer("a", 1000, 0, 1), Buffer("b", 1000, 1, 2), Buffer("c", 1000, 2, 3), Buffer("d", 1000, 3, 3)]
    size = plan_memory(bufs, alignment=64)
    assert size == 2 * 1024
    assert bufs[2].offset == bufs[0].offset
    in_place = [Buffer("a", 1000, 0, 1), Buffer("b", 1000, 1, 1)]
    assert plan_memory(in_place, inplace={"b": "a"}) == 1024
    assert in_place[1].offset == in_place[0].offset


def test_memory_plan_never_overlaps_live_buffers():
    rng = np.random.default_rng(0)
    bufs = []
    for i in range(60):
        first = int(rng.integers(0, 30))
        bufs.append(Buffer(f"b{i}", int(rng.integers(1, 5000)), first, first + int(rng.integers(0, 8))))
    plan_memory(bufs)
    for x in bufs:
        for y in bufs:
            if x is y or x.last < y.first or y.last < x.first:
                continue
            assert x.offset + x.size <= y.offset or y.offset + y.size <= x.offset, (x, y)


def test_inspect_reports_placement_and_planned_peak(tmp_path, mlp_exe):
    from hamr.cli.inspect_view import describe

    path = mlp_exe.save(tmp_path / "mlp.hamr")
    info = describe(hamr.load(path), path)
    assert set(info["placement"].values()) == {"cpu"}
    memory = info["memory"]["cpu"]
    # batch 1: the output (32 floats) and one input (64 floats); the fused kernel needs no arena
    assert memory["dims"] == {"batch": 1}
    assert memory["io_bytes"] == 32 * 4
    assert memory["peak_bytes"] >= memory["io_bytes"]


def test_a_dialect_without_a_kernel_source_vetoes_the_node():
    """A renderer whose dialect a hand-written kernel has no source for: the node falls back with the
    reason (no crash, no silent default); map kernels render in every dialect."""
    from hamr.frontends import import_onnx
    from hamr.ir.passes import optimise
    from hamr.targets.cpu.target import CpuTarget
    from hamr.targets.native.render.c import CRenderer

    class ToyRenderer(CRenderer):
        dialect = "toy"

    class ToyTarget(CpuTarget):
        renderer = ToyRenderer()

    model = optimise(import_onnx(mlp_model())[0])[0]
    part, lowered = ToyTarget().lower(model)
    fallback = [item.node for item in part.items if item.kind == "fallback"]
    assert [node.op for node in fallback] == ["MatMul"]
    assert part.reasons[fallback[0].name] == "no toy kernel for MatMul"
    source = ToyTarget().source(lowered)
    assert "add" in " ".join(launch.kernel.label.lower() for s in lowered.segments for launch in s.launches)
    assert "STORE" not in source.split("#define PARALLEL_THRESHOLD")[1]  # no anchor kernel was rendered
    cpu_part, _ = CpuTarget().lower(model)
    assert "fallback" not in cpu_part.placement.values()


def test_render_fills_every_placeholder_or_refuses():
    from hamr.targets.native.render.template import render

    assert render("f32 ${name}_x($T *in0$extra) { $$ }", name="k0", T="f32", extra="") == "f32 k0_x(f32 *in0) { $ }"
    with pytest.raises(KeyError):
        render("static void $name(void)")
