"""The cuda and rocm targets on a machine without a GPU: every kernel builds for every architecture, the
binaries match the launch metadata stored beside them, and the loader drives a driver as it should."""

from __future__ import annotations

import io
import math
import re

import msgpack
import numpy as np
import pytest
from elftools.elf.elffile import ELFFile

import hamr
from hamr import models
from hamr.errors import HamrError
from hamr.format.executable import load
from hamr.targets import get_target
from hamr.targets.cuda import nvrtc
from hamr.targets.rocm import clang
from tests.targets.fake_cuda import FakeCudaDriver
from tests.targets.fake_hip import FakeHip

needs_nvrtc = pytest.mark.skipif(nvrtc.module() is None, reason=f"NVRTC is not installed ({nvrtc.EXTRA})")
needs_clang = pytest.mark.skipif(not clang.available(), reason=f"no HIP-capable clang here ({clang.EXTRA})")
NT_AMDGPU_METADATA = 32


@pytest.fixture(scope="module", autouse=True)
def dialect_kernels_only():
    """These tests are about the dialect kernels and their loading; the Triton kernels that take over the GEMM and
    Conv anchors where triton is installed have theirs in test_triton_kernels.py."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HAMR_TRITON", "off")
        yield


@pytest.fixture(scope="module")
def conv_model():
    return models.conv3x3()


@pytest.fixture(scope="module")
def cuda_exe(conv_model):
    if nvrtc.module() is None:
        pytest.skip(f"NVRTC is not installed ({nvrtc.EXTRA})")
    return hamr.compile(conv_model, targets=["cuda", "cpu"])  # every architecture nvrtc.ARCHS names


@pytest.fixture(scope="module")
def rocm_exe(conv_model):
    if not clang.available():
        pytest.skip(f"no HIP-capable clang here ({clang.EXTRA})")
    return hamr.compile(conv_model, targets=["rocm"])


def _fake_driver(monkeypatch, exe, capability=(9, 0)) -> FakeCudaDriver:
    """The recording fake in place of cuda.bindings.driver, for a GPU of `capability`."""
    fake = FakeCudaDriver(capability=capability)
    fake.expect(exe.variants["cuda"]["launches"])
    monkeypatch.setattr("hamr.targets.cuda.driver.driver_module", lambda: fake)
    return fake


def _fixed_blocks(variant: dict) -> dict[str, int]:
    return {k["name"]: math.prod(k["block"]) for k in variant["launches"] if k["block_fixed"]}


@needs_nvrtc
def test_cuda_variant_carries_a_cubin_per_architecture_and_ptx_matching_its_metadata(cuda_exe):
    variant = cuda_exe.variants["cuda"]
    assert variant["fallback"] == {}
    assert variant["archs"] == list(nvrtc.ARCHS)
    names = {k["name"] for k in variant["launches"]}
    assert names and variant["compiler"]["name"] == "nvrtc"
    for arch in (a for a in nvrtc.ARCHS if a.startswith("sm_")):
        elf = ELFFile(io.BytesIO(bytes(variant["files"][f"{arch}.cubin"])))
        assert elf.header.e_machine == "EM_CUDA"
        assert elf.header.e_flags & 0xFF == int(arch[3:]), arch  # the SM the cubin was built for
        functions = {
            s.name for s in elf.get_section_by_name(".symtab").iter_symbols() if s["st_info"]["type"] == "STT_FUNC"
        }
        assert names <= functions, arch
    ptx = bytes(variant["files"]["compute_80.ptx"]).decode()
    assert re.search(r"^\.target sm_80", ptx, re.M)
    entries = dict(re.findall(r"\.entry (\w+)\(([^)]*)\)", ptx))
    assert set(entries) == names
    for k in variant["launches"]:
        assert entries[k["name"]].count(".param") == len(k["params"]), k["name"]
    for name, threads in _fixed_blocks(variant).items():
        body = ptx[ptx.index(f".entry {name}(") :]
        assert re.search(r"\.maxntid (\d+), 1, 1", body).group(1) == str(threads), name


@needs_clang
def test_rocm_code_objects_match_their_metadata_for_every_architecture(rocm_exe):
    variant = rocm_exe.variants["rocm"]
    assert variant["fallback"] == {}
    names = {k["name"] for k in variant["launches"]}
    params = {k["name"]: len(k["params"]) for k in variant["launches"]}
    for arch in clang.ARCHS:
        elf = ELFFile(io.BytesIO(bytes(variant["files"][f"{arch}.hsaco"])))
        assert elf.header.e_machine == "EM_AMDGPU"
        notes = [n for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE" for n in s.iter_notes()]
        meta = [n for n in notes if n["n_name"] == "AMDGPU" and n["n_type"] == NT_AMDGPU_METADATA]
        assert len(meta) == 1, arch
        desc = meta[0]["n_desc"]
        data = msgpack.unpackb(desc if isinstance(desc, bytes) else desc.encode("latin-1"))
        assert data["amdhsa.target"] == f"amdgcn-amd-amdhsa--{arch}"
        kernels = {k[".name"]: k for k in data["amdhsa.kernels"]}
        assert set(kernels) == names, arch
        for name, kernel in kernels.items():
            visible = [a for a in kernel[".args"] if not a[".value_kind"].startswith("hidden_")]
            assert len(visible) == params[name], (arch, name)
            assert kernel[".wavefront_size"] == (64 if arch.startswith("gfx9") else 32)
        for name, threads in _fixed_blocks(variant).items():
            assert kernels[name][".max_flat_workgroup_size"] == threads, (arch, name)


@needs_nvrtc
def test_the_gpu_kernels_are_the_opencl_kernels_under_a_dialect_header(conv_model):
    """The kernels PoCL runs in the opencl target's tests are the ones NVRTC and clang build."""
    from hamr.frontends import import_onnx
    from hamr.ir.passes import optimise

    model = optimise(import_onnx(conv_model)[0])[0]
    sources = {}
    for name in ("opencl", "cuda", "rocm"):
        target = get_target(name)
        sources[name] = target.source(target.lower(model)[1])[len(target.renderer.prelude) :]

    def kernels(text: str) -> set[str]:
        pieces = re.split(r"(?=#define STORE\b)", text)
        return {re.sub(r"\b(hamr_k\d+|k\d+_\d+)\b", "K", k).strip() for k in pieces if "__kernel" in k}

    assert kernels(sources["cuda"]) == kernels(sources["opencl"]) == kernels(sources["rocm"])
    assert kernels(sources["cuda"])  # a conv and its fused epilogue


@needs_nvrtc
def test_the_loader_drives_the_driver_with_the_stored_launch_metadata(cuda_exe, monkeypatch):
    fake = _fake_driver(monkeypatch, cuda_exe, (9, 0))
    session = hamr.Session(load(cuda_exe.to_bytes(), trust_binaries=True), device="auto")
    assert session.device.id == "cuda:0"  # the GPU is preferred
    x = np.random.default_rng(0).standard_normal((1, 64, 56, 56)).astype(np.float32)
    session.run({"x": x})
    variant = cuda_exe.variants["cuda"]
    assert fake.modules == [bytes(variant["files"]["sm_90.cubin"])]
    metadata = {k["name"]: k for k in variant["launches"]}
    assert fake.launches and {launch["function"] for launch in fake.launches} == set(metadata)
    uploads = [c for c in fake.calls if c[0] == "cuMemcpyHtoDAsync"]
    assert any(nbytes == x.nbytes for _, _, nbytes in uploads)
    for launch in fake.launches:
        meta = metadata[launch["function"]]
        assert len(launch["args"]) == len(meta["params"])
        if meta["block_fixed"]:
            assert list(launch["block"]) == meta["block"]
        assert launch["shared"] == meta["dynamic_shared_bytes"] == 0
        params_table, offset, *buffers = launch["args"]
        data, at = fake._view(params_table, 8)
        assert at == 0 and offset < len(data) // 8
        for pointer in buffers:
            fake._view(pointer, 1)  # every buffer argument points into an allocation


@needs_nvrtc
@pytest.mark.parametrize(
    "capability,image",
    [((8, 0), "sm_80.cubin"), ((8, 6), "sm_86.cubin"), ((8, 7), "sm_86.cubin"), ((12, 0), "compute_80.ptx")],
)
def test_a_gpu_loads_its_own_cubin_else_an_older_one_of_its_generation_else_ptx(
    cuda_exe, monkeypatch, capability, image
):
    fake = _fake_driver(monkeypatch, cuda_exe, capability)
    hamr.Session(load(cuda_exe.to_bytes(), trust_binaries=True), device="cuda:0")
    assert fake.modules == [bytes(cuda_exe.variants["cuda"]["files"][image])]


@needs_nvrtc
def test_untrusted_binaries_are_dropped_and_this_machine_builds_the_kernels_itself(cuda_exe, monkeypatch):
    fake = _fake_driver(monkeypatch, cuda_exe, (7, 5))
    exe = load(cuda_exe.to_bytes())  # not signed, not trusted: no cubin nor PTX reaches the driver
    assert {f for f in exe.trust.native if "/cuda/" in f or f.endswith((".cubin", ".ptx"))}
    hamr.Session(exe, device="cuda:0")
    (image,) = fake.modules
    elf = ELFFile(io.BytesIO(image))
    assert elf.header.e_flags & 0xFF == 75  # built here, for this GPU, from the regenerated source
    assert image not in {bytes(b) for b in cuda_exe.variants["cuda"]["files"].values()}


@needs_nvrtc
def test_without_a_driver_cuda_is_one_error_line_and_auto_runs_elsewhere(cuda_exe):
    exe = load(cuda_exe.to_bytes())
    with pytest.raises(HamrError) as info:
        get_target("cuda").load(exe.model, exe.variants["cuda"], "cuda:0")
    assert "\n" not in str(info.value) and str(info.value).startswith("cuda: no NVIDIA driver on this host")
    with pytest.raises(HamrError, match="device 'cuda:0' is not present on this host"):
        hamr.Session(exe, device="cuda:0")
    assert hamr.Session(exe, device="auto").device.id == "cpu"


def test_without_the_hip_runtime_rocm_is_one_error_line():
    from hamr.targets.rocm.hip import HipApi

    with pytest.raises(HamrError) as info:
        HipApi(0)
    assert "\n" not in str(info.value) and str(info.value).startswith("rocm: ")


def test_amd_gpu_architectures_come_from_the_kernel_drivers_topology(tmp_path):
    from hamr.targets.rocm.hip import gpu_archs

    for node, version in (("0", 0), ("1", 90402), ("2", 90010), ("3", 110000)):
        (tmp_path / node).mkdir()
        (tmp_path / node / "properties").write_text(f"cpu_cores_count 0\ngfx_target_version {version}\n")
    assert gpu_archs(tmp_path) == ["gfx942", "gfx90a", "gfx1100"]
    assert [clang.isa_version(a) for a in gpu_archs(tmp_path)] == [9402, 9010, 11000]


@needs_nvrtc
def test_a_kernel_nvrtc_refuses_is_one_error_line():
    with pytest.raises(HamrError) as info:
        nvrtc._compile("__global__ void k() { undeclared_thing(); }", "sm_80")
    assert "\n" not in str(info.value) and "undeclared_thing" in str(info.value)


@pytest.fixture(scope="module")
def rnn_exe():
    if nvrtc.module() is None:
        pytest.skip(f"NVRTC is not installed ({nvrtc.EXTRA})")
    from tests.runtime.test_runtime import rnn_model

    return hamr.compile(rnn_model(), targets=["cpu", "cuda"])


@needs_nvrtc
def test_carried_state_moves_cpu_to_cuda_and_back_through_device_memory(rnn_exe, monkeypatch):
    """What migration moves, byte for byte, through the driver (the fake's kernels compute nothing)."""
    from tests.runtime.test_runtime import rnn_reference

    fake = _fake_driver(monkeypatch, rnn_exe, (9, 0))
    session = hamr.Session(load(rnn_exe.to_bytes(), trust_binaries=True), device="cpu", state={"h_next": "h"})
    xs = [np.random.default_rng(i).standard_normal((2, 4)).astype(np.float32) for i in range(3)]
    for x in xs:
        session.run({"x": x})
    held = np.array(session.state["h"])
    np.testing.assert_allclose(held, rnn_reference(xs)[1], rtol=1e-5, atol=1e-6)
    report = session.migrate("cuda:0")
    assert (report.source, report.destination, report.moved_bytes) == ("cpu", "cuda:0", held.nbytes)
    assert session.program.is_device_value(session._state["h"])
    assert any(bytes(data) == held.tobytes() for data in fake.memory.values())  # the state's own allocation
    np.testing.assert_array_equal(session.state["h"], held)  # read back from device memory
    back = session.migrate("cpu")
    assert back.destination == "cpu" and back.moved_bytes == held.nbytes
    np.testing.assert_array_equal(session.state["h"], held)
    x = xs[0]
    np.testing.assert_allclose(session.run({"x": x})["y"], 2 * np.tanh(x @ _u() + held @ _w()), rtol=1e-5, atol=1e-6)


def _u():
    from tests.runtime.test_runtime import U

    return U


def _w():
    from tests.runtime.test_runtime import W

    return W


@needs_nvrtc
def test_a_cuda_profile_has_each_kernel_from_its_events(rnn_exe, monkeypatch):
    fake = _fake_driver(monkeypatch, rnn_exe, (9, 0))
    session = hamr.Session(load(rnn_exe.to_bytes(), trust_binaries=True), device="cuda:0")
    session.run({"x": np.ones((2, 4), np.float32), "h": np.zeros((2, 8), np.float32)}, profile=True)
    kernels = session.last_profile.kernels()
    assert [e.ops for e in kernels] == ["gemm", "gemm+Add+Tanh+Mul"]
    assert all((e.target, e.device) == ("cuda", "cuda:0") for e in kernels)
    assert len(fake.launches) == 2


def _fake_hip(monkeypatch, tmp_path, exe, arch: str) -> FakeHip:
    """The recording fake in place of libamdhip64, and a kernel-driver topology with one GPU of `arch`."""
    fake = FakeHip()
    fake.params_of = {k["name"]: k["params"] for k in exe.variants["rocm"]["launches"]}
    monkeypatch.setattr("hamr.targets.rocm.hip.library", lambda: fake)
    node = tmp_path / "topology" / "1"
    node.mkdir(parents=True)
    digits = arch[3:]
    version = int(digits[:-2]) * 10000 + int(digits[-2], 16) * 100 + int(digits[-1], 16)
    (node / "properties").write_text(f"simd_count 1216\nsimd_per_cu 4\ngfx_target_version {version}\n")
    monkeypatch.setattr("hamr.targets.rocm.hip.TOPOLOGY", tmp_path / "topology")
    return fake


@needs_clang
def test_the_rocm_loader_drives_hip_with_the_stored_launch_metadata(rocm_exe, monkeypatch, tmp_path):
    fake = _fake_hip(monkeypatch, tmp_path, rocm_exe, "gfx942")
    session = hamr.Session(load(rocm_exe.to_bytes(), trust_binaries=True), device="auto")
    assert session.device.id == "rocm:0" and "gfx942" in session.device.architecture
    assert session.device.compute_units == 304
    session.run({"x": np.ones((1, 64, 56, 56), np.float32)}, profile=True)
    variant = rocm_exe.variants["rocm"]
    assert fake.modules == [bytes(variant["files"]["gfx942.hsaco"])]
    metadata = {k["name"]: k for k in variant["launches"]}
    assert fake.launches and {launch["function"] for launch in fake.launches} == set(metadata)
    for launch in fake.launches:
        meta = metadata[launch["function"]]
        assert len(launch["args"]) == len(meta["params"]) and launch["shared"] == 0
        if meta["block_fixed"]:
            assert list(launch["block"]) == meta["block"]
        for pointer in [launch["args"][0], *launch["args"][2:]]:
            fake._view(pointer, 1)
    assert all(e.target == "rocm" for e in session.last_profile.kernels())


@needs_clang
def test_an_amd_gpu_the_file_has_no_code_object_for_gets_one_built_here(rocm_exe, monkeypatch, tmp_path):
    fake = _fake_hip(monkeypatch, tmp_path, rocm_exe, "gfx1030")
    hamr.Session(load(rocm_exe.to_bytes(), trust_binaries=True), device="rocm:0")
    (image,) = fake.modules
    notes = [
        n for s in ELFFile(io.BytesIO(image)).iter_sections() if s["sh_type"] == "SHT_NOTE" for n in s.iter_notes()
    ]
    desc = next(n["n_desc"] for n in notes if n["n_type"] == NT_AMDGPU_METADATA)
    meta = msgpack.unpackb(desc if isinstance(desc, bytes) else desc.encode("latin-1"))
    assert meta["amdhsa.target"] == "amdgcn-amd-amdhsa--gfx1030"


@needs_nvrtc
@needs_clang
def test_carried_state_moves_cuda_to_rocm_through_both_drivers(monkeypatch, tmp_path):
    """An NVIDIA and an AMD GPU side by side (both fakes): the state leaves one device's memory for the other's."""
    from tests.runtime.test_runtime import rnn_model

    exe = load(hamr.compile(rnn_model(), targets=["cpu", "cuda", "rocm"]).to_bytes(), trust_binaries=True)
    cuda = _fake_driver(monkeypatch, exe)
    amd = _fake_hip(monkeypatch, tmp_path, exe, "gfx942")
    session = hamr.Session(exe, device="cpu", state={"h_next": "h"})
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    session.run({"x": x})
    held = np.array(session.state["h"])
    assert session.migrate("cuda:0").moved_bytes == held.nbytes
    assert any(bytes(data) == held.tobytes() for data in cuda.memory.values())
    report = session.migrate("rocm:0")
    assert (report.source, report.destination, report.moved_bytes) == ("cuda:0", "rocm:0", held.nbytes)
    assert any(bytes(data) == held.tobytes() for data in amd.memory.values())
    np.testing.assert_array_equal(session.state["h"], held)
    assert amd.modules == [bytes(exe.variants["rocm"]["files"]["gfx942.hsaco"])]


@needs_nvrtc
def test_a_gpu_older_than_every_binary_without_nvrtc_here_is_one_line_naming_what_the_file_carries(
    cuda_exe, monkeypatch
):
    _fake_driver(monkeypatch, cuda_exe, (7, 5))
    monkeypatch.setattr(get_target("cuda").builder, "available", lambda: False)
    with pytest.raises(HamrError) as info:
        hamr.Session(load(cuda_exe.to_bytes(), trust_binaries=True), device="cuda:0")
    message = str(info.value)
    assert "\n" not in message and "cuda:0 (sm_75)" in message
    assert "sm_80.cubin" in message and "compute_80.ptx" in message and nvrtc.EXTRA in message


def test_conformance_on_a_target_no_device_here_runs_says_to_compile_only():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "hamr.cli.app", "conformance", "--target", "cuda", "-k", "^test_relu$"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1
    assert "no device here runs the cuda target" in lines[0] and "--compile-only" in lines[0]
