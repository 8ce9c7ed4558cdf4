"""The GPU targets' Triton GEMMs on a machine without a GPU: which launches they take, what the variant carries,
results under Triton's interpreter through hamr's own plan and argument packing, and the driver calls."""

from __future__ import annotations

import io
import re

import msgpack
import numpy as np
import onnx
import pytest
from elftools.elf.elffile import ELFFile
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import hamr
from hamr.format.executable import load
from hamr.targets.cuda import nvrtc
from hamr.targets.gpu.triton import aot, specs
from hamr.targets.rocm import clang
from tests.targets.fake_cuda import FakeCudaDriver
from tests.targets.triton_host import InterpretingApi

pytestmark = [
    pytest.mark.skipif(not aot.available(), reason=f"triton is not installed ({aot.EXTRA})"),
    pytest.mark.skipif(nvrtc.module() is None, reason=f"NVRTC is not installed ({nvrtc.EXTRA})"),
]
NT_AMDGPU_METADATA = 32
RNG = np.random.default_rng(7)


def _weight(name, *shape):
    return onnx.numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _model(nodes, inputs, output_shape, weights, opset=20):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def matmul_bias_relu():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    return _model(nodes, [("x", [70, 96])], [70, 40], [_weight("w", 96, 40), _weight("b", 40)])


def gemm_trans_b_sigmoid():
    nodes = [
        helper.make_node("Gemm", ["x", "w", "c"], ["g"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Sigmoid", ["g"], ["y"]),
    ]
    return _model(nodes, [("x", [33, 50])], [33, 65], [_weight("w", 65, 50), _weight("c", 1, 65)])


def gemm_trans_a_full_c_leaky():
    nodes = [
        helper.make_node("Gemm", ["x", "w", "c"], ["g"], transA=1),
        helper.make_node("LeakyRelu", ["g"], ["y"], alpha=0.2),
    ]
    return _model(nodes, [("x", [40, 30])], [30, 20], [_weight("w", 40, 20), _weight("c", 30, 20)])


def batched_residual_tanh():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["r", "m"], ["a"]),
        helper.make_node("Tanh", ["a"], ["y"]),
    ]
    return _model(nodes, [("x", [2, 3, 17, 24]), ("r", [2, 3, 17, 70])], [2, 3, 17, 70], [_weight("w", 24, 70)])


def scaled_difference_gelu():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Mul", ["m", "s"], ["a"]),
        helper.make_node("Sub", ["v", "a"], ["d"]),
        helper.make_node("Gelu", ["d"], ["y"]),
    ]
    weights = [_weight("w", 64, 48), _weight("s", 1), _weight("v", 80, 1)]
    return _model(nodes, [("x", [80, 64])], [80, 48], weights)


MODELS = [
    matmul_bias_relu,
    gemm_trans_b_sigmoid,
    gemm_trans_a_full_c_leaky,
    batched_residual_tanh,
    scaled_difference_gelu,
]


def conv_bias_relu():
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    return _model(nodes, [("x", [2, 5, 13, 11])], [2, 20, 7, 11], [_weight("w", 20, 5, 3, 3), _weight("b", 20)])


def grouped_dilated_conv_residual_sigmoid():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], group=2, dilations=[2, 1], pads=[2, 0, 2, 0]),
        helper.make_node("Add", ["c", "r"], ["a"]),
        helper.make_node("Mul", ["a", "s"], ["m"]),
        helper.make_node("Sigmoid", ["m"], ["y"]),
    ]
    inputs = [("x", [1, 6, 9, 8]), ("r", [1, 36, 9, 6])]
    return _model(nodes, inputs, [1, 36, 9, 6], [_weight("w", 36, 3, 3, 3), _weight("s", 1, 36, 1, 1)])


def pointwise_conv_1d_tanh():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Tanh", ["c"], ["y"])]
    return _model(nodes, [("x", [3, 8, 30])], [3, 70, 30], [_weight("w", 70, 8, 1)])


CONVS = [conv_bias_relu, grouped_dilated_conv_residual_sigmoid, pointwise_conv_1d_tanh]


def _feeds(model):
    return {
        i.name: RNG.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
        for i in model.graph.input
    }


@pytest.fixture
def sm90(monkeypatch):
    monkeypatch.setenv("HAMR_CUDA_ARCHS", "sm_90")


def _interpreted_session(monkeypatch, exe, driver_version=13000):
    variant = exe.variants["cuda"]
    api = InterpretingApi(variant, driver_version)
    fake = FakeCudaDriver(capability=(9, 0), driver_version=driver_version)
    monkeypatch.setattr("hamr.targets.cuda.driver.driver_module", lambda: fake)
    monkeypatch.setattr("hamr.targets.cuda.driver.CudaApi", lambda index: api)
    return hamr.Session(load(exe.to_bytes(), trust_binaries=True), device="cuda:0"), api


@pytest.mark.parametrize("make", MODELS + CONVS, ids=lambda f: f.__name__)
def test_anchors_and_their_epilogues_are_right_under_the_interpreter(make, sm90, monkeypatch):
    model = make()
    exe = hamr.compile(model, targets=["cuda"])
    variant = exe.variants["cuda"]
    [kernel] = variant["triton"]["kernels"]
    assert len(kernel["launches"]) == 1 and set(kernel["archs"]) == {"sm_90"}
    session, api = _interpreted_session(monkeypatch, exe)
    feeds = _feeds(model)
    got = session.run(feeds)["y"]
    (want,) = ReferenceEvaluator(model).run(None, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    name, grid, block, shared = api.launched[-1]
    assert name == kernel["name"] and list(block) == kernel["archs"]["sm_90"]["block"]
    assert shared == kernel["archs"]["sm_90"]["dynamic_shared_bytes"] > 0


def _runtime_params(kernel) -> int:
    return sum(kind != "constexpr" for kind in kernel["signature"].values())


def test_cuda_triton_binaries_match_their_launch_metadata(monkeypatch):
    monkeypatch.delenv("HAMR_CUDA_ARCHS", raising=False)
    variant = hamr.compile(matmul_bias_relu(), targets=["cuda"]).variants["cuda"]
    [kernel] = variant["triton"]["kernels"]
    assert set(kernel["archs"]) == {"sm_80", "sm_90", "compute_80"}  # sm_86 and sm_89 GPUs run sm_80's cubin
    for arch, meta in kernel["archs"].items():
        assert meta["input_precision"] == "ieee" and meta["global_scratch"]["size"] == 0
        image = bytes(variant["files"][aot.file_name(kernel, arch)])
        if arch.startswith("compute_"):
            ptx = image.decode()
            assert re.search(rf"^\.target sm_{arch[8:]}", ptx, re.M)
            params = dict(re.findall(r"\.entry (\w+)\(([^)]*)\)", ptx))[meta["function"]]
            assert params.count(".param") == _runtime_params(kernel) + 2  # and global and profile scratch
            assert re.search(r"\.(?:reqntid|maxntid) (\d+)", ptx).group(1) == str(meta["block"][0])
            assert meta["min_cuda"] == "12.9" and meta["ptx_version"] == "8.8"
            continue
        elf = ELFFile(io.BytesIO(image))
        sm = int(arch[3:])
        assert elf.header.e_machine == "EM_CUDA"
        assert sm in (elf.header.e_flags & 0xFF, (elf.header.e_flags >> 8) & 0xFF), arch  # ptxas 12 and 13 layouts
        functions = {
            s.name for s in elf.get_section_by_name(".symtab").iter_symbols() if s["st_info"]["type"] == "STT_FUNC"
        }
        assert meta["function"] in functions
        assert meta["min_cuda"] == ("13.0" if sm >= 90 else "12.0"), arch  # Triton assembles sm_90 with ptxas 13


@pytest.mark.skipif(not clang.available(), reason=f"no HIP-capable clang here ({clang.EXTRA})")
def test_rocm_triton_code_objects_match_their_launch_metadata():
    variant = hamr.compile(matmul_bias_relu(), targets=["rocm"]).variants["rocm"]
    [kernel] = variant["triton"]["kernels"]
    for arch in clang.ARCHS:
        meta = kernel["archs"][arch]
        elf = ELFFile(io.BytesIO(bytes(variant["files"][aot.file_name(kernel, arch)])))
        notes = [n for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE" for n in s.iter_notes()]
        [note] = [n for n in notes if n["n_name"] == "AMDGPU" and n["n_type"] == NT_AMDGPU_METADATA]
        desc = note["n_desc"]
        data = msgpack.unpackb(desc if isinstance(desc, bytes) else desc.encode("latin-1"))
        assert data["amdhsa.target"].endswith(arch)
        [code] = data["amdhsa.kernels"]
        assert code[".name"] == meta["function"]
        visible = [a for a in code[".args"] if not a[".value_kind"].startswith("hidden_")]
        assert len(visible) == _runtime_params(kernel) + 2
        assert code[".max_flat_workgroup_size"] == meta["block"][0] == 256
        assert code[".wavefront_size"] == (64 if arch.startswith("gfx9") else 32)
        assert code[".vgpr_spill_count"] == 0, arch


def _fake_session(monkeypatch, exe, driver_version, trust=True):
    fake = FakeCudaDriver(capability=(9, 0), driver_version=driver_version)
    fake.expect(exe.variants["cuda"]["launches"])
    fake.expect_triton(exe.variants["cuda"]["triton"])
    monkeypatch.setattr("hamr.targets.cuda.driver.driver_module", lambda: fake)
    return hamr.Session(load(exe.to_bytes(), trust_binaries=trust), device="cuda:0"), fake


@pytest.mark.parametrize("driver,image", [(13000, "sm_90.cubin"), (12090, "compute_80.ptx")])
def test_the_driver_gets_the_triton_binary_it_runs_with_scratch_pointers_block_and_shared_memory(
    monkeypatch, driver, image
):
    monkeypatch.setenv("HAMR_CUDA_ARCHS", "sm_90,compute_80")
    exe = hamr.compile(matmul_bias_relu(), targets=["cuda"])
    variant = exe.variants["cuda"]
    [kernel] = variant["triton"]["kernels"]
    session, fake = _fake_session(monkeypatch, exe, driver)
    session.run({"x": np.ones((70, 96), np.float32)}, profile=True)
    assert [e.ops for e in session.last_profile.kernels()] == ["gemm+Add+Relu (triton)"]
    assert bytes(variant["files"][f"{kernel['name']}.{image}"]) in fake.modules  # a 12.9 driver: ptxas 13's cubin waits
    meta = kernel["archs"][image.split(".")[0]]
    [launch] = [launch for launch in fake.launches if launch["function"] == meta["function"]]
    assert launch["grid"] == (2 * 1, 1, 1)  # 70 x 40 outputs in 64 x 64 tiles
    assert list(launch["block"]) == meta["block"] and launch["shared"] == meta["dynamic_shared_bytes"]
    params_table, offset, *buffers, global_scratch, profile_scratch = launch["args"]
    assert len(buffers) == 4 and global_scratch == profile_scratch == 0  # x, w, out, b; no scratch needed
    assert not any(launch["function"].startswith("hamr_k") for launch in fake.launches)
    assert not any(call[0] == "cuFuncSetAttribute" for call in fake.calls)


def test_a_tile_above_48_kib_of_shared_memory_is_opted_in_before_it_launches(sm90, monkeypatch):
    monkeypatch.setattr(specs, "CONFIG", {"BM": 128, "BN": 128, "BK": 64, "num_warps": 8, "num_stages": 3})
    exe = hamr.compile(matmul_bias_relu(), targets=["cuda"])
    [kernel] = exe.variants["cuda"]["triton"]["kernels"]
    shared = kernel["archs"]["sm_90"]["dynamic_shared_bytes"]
    assert shared > 48 * 1024
    session, fake = _fake_session(monkeypatch, exe, 13000)
    session.run({"x": np.ones((70, 96), np.float32)})
    [opt_in] = [call for call in fake.calls if call[0] == "cuFuncSetAttribute"]
    assert opt_in[1:] == ("gemm", 8, shared)
    assert fake.calls.index(opt_in) < len(fake.calls) and fake.launches[-1]["shared"] == shared


def test_with_triton_off_the_gemms_run_their_dialect_kernels(sm90, monkeypatch):
    monkeypatch.setenv("HAMR_TRITON", "off")
    exe = hamr.compile(matmul_bias_relu(), targets=["cuda"])
    variant = exe.variants["cuda"]
    assert variant["triton"] is None and not any(name.startswith("hamr_t") for name in variant["files"])
    session, fake = _fake_session(monkeypatch, exe, 13000, trust=False)
    session.run({"x": np.ones((70, 96), np.float32)})
    assert {launch["function"] for launch in fake.launches} == {k["name"] for k in variant["launches"]}


def test_an_untrusted_file_gets_its_triton_kernels_built_here(sm90, monkeypatch):
    exe = hamr.compile(gemm_trans_b_sigmoid(), targets=["cuda"])
    [kernel] = exe.variants["cuda"]["triton"]["kernels"]
    session, fake = _fake_session(monkeypatch, exe, 13000, trust=False)
    session.run({"x": np.ones((33, 50), np.float32)})
    spec = {k: v for k, v in kernel.items() if k != "archs"}
    assert aot.build(spec, "sm_90")[0] in fake.modules


def test_which_launches_run_as_triton_kernels(sm90):
    def count(model):
        exe = hamr.compile(model, targets=["cuda"])
        triton = exe.variants["cuda"]["triton"]
        return sum(len(k["launches"]) for k in triton["kernels"]) if triton else 0

    branching = _model(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Relu", ["m"], ["r"]),
            helper.make_node("Add", ["m", "r"], ["y"]),
        ],
        [("x", [8, 16])],
        [8, 4],
        [_weight("w", 16, 4)],
    )
    vector = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", [8, 16])], [8], [_weight("w", 16)])
    per_row = _model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
        [("x", [2, 8, 16])],
        [2, 8],
        [_weight("w", 16), _weight("b", 8)],
    )
    assert count(matmul_bias_relu()) == 1
    assert count(branching) == 0  # Add reads the product and its Relu: a branch, not a chain over the tile
    assert count(vector) == 1
    assert count(per_row) == 0  # a vector B: the output's last axis is M, so b is per row, not per column


def _gemm_cases():
    from hamr.conformance.suite import load_cases, op_of

    cases = [c for c in load_cases(r"^test_(gemm|matmul)_") if op_of(c) in ("Gemm", "MatMul")]
    return [c for c in cases if c.model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT]


@pytest.mark.parametrize("case", _gemm_cases(), ids=lambda c: c.name)
def test_the_onnx_gemm_and_matmul_node_cases_pass_on_the_triton_kernels(case, monkeypatch):
    """The backend suite's float32 Gemm and MatMul cases, every launch a Triton kernel under the interpreter."""
    from hamr.conformance.suite import _normalise, assert_similar

    monkeypatch.setenv("HAMR_CUDA_ARCHS", "sm_90")
    exe = hamr.compile(case.model, targets=["cuda"])
    session, api = _interpreted_session(monkeypatch, exe)
    names = [i.name for i in case.model.graph.input]
    for inputs, outputs in case.data_sets:
        got = list(session.run(dict(zip(names, (_normalise(v) for v in inputs)))).values())
        for expected, actual in zip((_normalise(v) for v in outputs), got, strict=True):
            assert_similar(expected, actual, case.rtol, case.atol)
    assert api.launched  # and every launch was a Triton kernel (a dialect launch fails in the api)


def conv_silu():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Mul", ["s", "c"], ["y"]),
    ]
    return _model(nodes, [("x", [1, 4, 6, 7])], [1, 16, 6, 7], [_weight("w", 16, 4, 3, 3)])


def gemm_hard_sigmoid_hard_swish():
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"]),
        helper.make_node("HardSigmoid", ["g"], ["h"], alpha=0.3, beta=0.4),
        helper.make_node("Mul", ["h", "k"], ["m"]),
        helper.make_node("HardSwish", ["m"], ["y"]),
    ]
    return _model(nodes, [("x", [9, 12])], [9, 10], [_weight("w", 12, 10), _weight("k", 1, 1)])


@pytest.mark.parametrize("make", [conv_silu, gemm_hard_sigmoid_hard_swish], ids=lambda f: f.__name__)
def test_silu_and_the_hard_activations_fuse_into_the_triton_kernel(make, sm90, monkeypatch):
    model = make()
    exe = hamr.compile(model, targets=["cuda"])
    [kernel] = exe.variants["cuda"]["triton"]["kernels"]
    session, api = _interpreted_session(monkeypatch, exe)
    feeds = {name: value * 2 for name, value in _feeds(model).items()}  # wide enough for the hard clamps
    (want,) = ReferenceEvaluator(model).run(None, feeds)
    np.testing.assert_allclose(session.run(feeds)["y"], want, rtol=1e-4, atol=1e-5)
    assert [name for name, *_ in api.launched] == [kernel["name"]]


def test_an_sm_86_gpu_runs_the_sm_80_triton_cubin(monkeypatch):
    monkeypatch.delenv("HAMR_CUDA_ARCHS", raising=False)
    exe = hamr.compile(matmul_bias_relu(), targets=["cuda"])
    [kernel] = exe.variants["cuda"]["triton"]["kernels"]
    fake = FakeCudaDriver(capability=(8, 6), driver_version=12090)
    fake.expect(exe.variants["cuda"]["launches"])
    fake.expect_triton(exe.variants["cuda"]["triton"])
    monkeypatch.setattr("hamr.targets.cuda.driver.driver_module", lambda: fake)
    session = hamr.Session(load(exe.to_bytes(), trust_binaries=True), device="cuda:0")
    session.run({"x": np.ones((70, 96), np.float32)})
    files = exe.variants["cuda"]["files"]
    assert fake.modules == [bytes(files["sm_86.cubin"]), bytes(files[f"{kernel['name']}.sm_80.cubin"])]


def test_a_stateful_session_computes_on_cuda_between_migrations_from_and_back_to_cpu(sm90, monkeypatch):
    """The recurrent cell's two launches (the second one writes h' and y = 2 h') are Triton kernels, run by the
    interpreter: the state migrates to the GPU, two steps compute there, it comes back, and every output and the
    final state match a NumPy recurrence."""
    from tests.runtime.test_runtime import rnn_model, rnn_reference

    exe = hamr.compile(rnn_model(), targets=["cpu", "cuda"])
    triton = exe.variants["cuda"]["triton"]
    assert sum(len(k["launches"]) for k in triton["kernels"]) == len(exe.variants["cuda"]["kernels"]) == 2
    api = InterpretingApi(exe.variants["cuda"])
    monkeypatch.setattr("hamr.targets.cuda.driver.driver_module", lambda: FakeCudaDriver(driver_version=13000))
    monkeypatch.setattr("hamr.targets.cuda.driver.CudaApi", lambda index: api)
    session = hamr.Session(load(exe.to_bytes(), trust_binaries=True), device="cpu", state={"h_next": "h"})
    xs = [RNG.standard_normal((3, 4)).astype(np.float32) for _ in range(5)]
    ys = [session.run({"x": xs[0]})["y"], session.run({"x": xs[1]})["y"]]
    session.migrate("cuda:0")
    ys += [session.run({"x": xs[2]})["y"], session.run({"x": xs[3]})["y"]]
    assert len(api.launched) == 4  # two steps of two launches, all on the Triton kernels
    session.migrate("cpu")
    ys.append(session.run({"x": xs[4]})["y"])
    want_ys, want_h = rnn_reference(xs)
    for got, want in zip(ys, want_ys, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(session.state["h"], want_h, rtol=1e-5, atol=1e-5)
