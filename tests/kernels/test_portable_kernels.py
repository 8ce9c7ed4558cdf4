"""hamr kernel C launched from Python (hamr.kernels): each kernel against NumPy on cpu and OpenCL, built
for CUDA and ROCm, and every misuse one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hamr.kernels
from hamr.errors import CustomOpError, KernelError, KernelSourceError
from hamr.ops.kernel_source import KernelSource
from hamr.targets.cuda import nvrtc
from hamr.targets.rocm import clang
from tests.kernels.portable_samples import SOURCE

DEVICES = ["cpu", pytest.param("opencl:0", marks=pytest.mark.opencl)]


@pytest.fixture(scope="module")
def module():
    return hamr.kernels.from_source(SOURCE, "samples")


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("device", DEVICES)
def test_saxpy_and_float4_vectors(module, rng, device):
    n = 1000
    x, y = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    want = 2.5 * x + y
    module.launch("saxpy", (n + 255) // 256, 256, n, 2.5, x, y, device=device)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    out = np.zeros(64, np.float32)
    module.launch("scale4", 1, 16, x[:64].copy(), out, 3.0, 16, device=device)
    np.testing.assert_allclose(out, 3 * x[:64], rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_tiled_gemm_with_local_memory_and_barriers(module, rng, device):
    m, n, k = 37, 45, 50
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    c = np.zeros((m, n), np.float32)
    module.launch("gemm_tiled", ((n + 15) // 16, (m + 15) // 16), (16, 16), a, b, c, m, n, k, device=device)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_warp_shuffle_reduction_into_dynamic_local_memory_and_an_atomic(module, rng, device):
    x = rng.standard_normal(10000).astype(np.float32)
    out = np.zeros(1, np.float32)
    module.launch("reduce_sum", 8, 256, x, out, x.size, shared_bytes=8 * 4, device=device)
    np.testing.assert_allclose(out[0], x.astype(np.float64).sum(), rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_histogram_with_local_and_global_atomics(module, rng, device):
    x = rng.integers(0, 1000, 5000).astype(np.int32)
    bins = np.zeros(64, np.uint32)
    module.launch("histogram", (x.size + 127) // 128, 128, x, bins, x.size, device=device)
    np.testing.assert_array_equal(bins, np.bincount(x & 63, minlength=64))


@pytest.mark.parametrize("device", DEVICES)
def test_atomic_max_and_min_on_floats_and_ints(module, rng, device):
    x = rng.standard_normal(300).astype(np.float32)
    fmax_, imax, imin = np.zeros(1, np.float32), np.full(1, -(2**30), np.int32), np.full(1, 2**30, np.int32)
    module.launch("extremes", 3, 128, x, fmax_, imax, imin, x.size, device=device)
    assert fmax_[0] == np.abs(x).max()
    assert imax[0] == (x * 100).astype(np.int32).max() and imin[0] == (x * 100).astype(np.int32).min()


@pytest.mark.parametrize("device", DEVICES)
def test_shuffles_move_values_between_the_lanes_of_each_warp(module, device):
    x = np.arange(128, dtype=np.int32) * 3 + 1
    down, up, xr, idx = (np.zeros(128, np.int32) for _ in range(4))
    module.launch("shuffles", 2, 64, x, down, up, xr, idx, device=device)
    lane, base = np.arange(128) % 32, np.arange(128) - np.arange(128) % 32
    np.testing.assert_array_equal(down, np.where(lane + 3 < 32, x[np.minimum(base + lane + 3, 127)], x))
    np.testing.assert_array_equal(up, np.where(lane >= 5, x[base + lane - 5], x))
    np.testing.assert_array_equal(xr, x[base + (lane ^ 7)])
    np.testing.assert_array_equal(idx, x[base + 31 - lane])


@pytest.mark.parametrize("device", DEVICES)
def test_work_item_ids_over_a_two_dimensional_grid(module, device):
    grid, block = (3, 2), (4, 5)
    out = np.zeros((2 * 5, 3 * 4, 4), np.int32)
    module.launch("ids", grid, block, out, device=device)
    gy, gx = np.mgrid[0:10, 0:12]
    np.testing.assert_array_equal(out[..., 0], gx % 4)
    np.testing.assert_array_equal(out[..., 1], gy % 5)
    np.testing.assert_array_equal(out[..., 2], gx // 4)
    assert (out[..., 3] == 2).all()


@pytest.mark.skipif(nvrtc.module() is None, reason=f"NVRTC is not installed ({nvrtc.EXTRA})")
def test_the_same_source_builds_for_every_cuda_architecture(module):
    built = module.compile_for("cuda")
    assert set(built) == set(nvrtc.archs()) and all(built.values())


@pytest.mark.skipif(not clang.available(), reason=f"no HIP-capable clang here ({clang.EXTRA})")
def test_the_same_source_builds_for_every_rocm_architecture(module):
    built = module.compile_for("rocm")
    assert set(built) == set(clang.archs()) and all(data.startswith(b"\x7fELF") for data in built.values())


def test_a_hk_file_loads_and_a_broken_one_is_one_error_line(tmp_path):
    good = tmp_path / "k.hk"
    good.write_text(json.dumps({"format": "hamr-kernels", "version": 1, "source": SOURCE, "kernels": ["saxpy"]}))
    assert "gemm_tiled" in hamr.kernels.load(good).kernels
    for name, text in [
        ("garbage.hk", "\x00not json"),
        ("other.hk", json.dumps({"format": "something", "source": SOURCE})),
        ("future.hk", json.dumps({"format": "hamr-kernels", "version": 9, "source": SOURCE})),
        ("corrupt.hk", json.dumps({"format": "hamr-kernels", "version": 1, "source": 5, "kernels": []})),
    ]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(KernelSourceError) as info:
            hamr.kernels.load(path)
        assert "\n" not in str(info.value) and name in str(info.value)


@pytest.mark.parametrize(
    "args, message",
    [
        ((10, 2.0, np.zeros(10, np.float32)), "takes 4 argument(s)"),
        ((10, 2.0, np.zeros(10, np.float64), np.zeros(10, np.float32)), "the array is float64"),
        ((10, "two", np.zeros(10, np.float32), np.zeros(10, np.float32)), "pass a number"),
        ((2**40, 2.0, np.zeros(10, np.float32), np.zeros(10, np.float32)), "does not fit"),
        ((10, 2.0, [0.0] * 10, np.zeros(10, np.float32)), "pass a NumPy array"),
    ],
)
def test_a_bad_argument_is_refused_before_anything_runs(module, args, message):
    with pytest.raises(KernelSourceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        module.launch("saxpy", 1, 32, *args, device="cpu")


def test_bad_launches_name_what_is_wrong(module):
    x = np.zeros(4, np.float32)
    with pytest.raises(KernelSourceError, match="no kernel 'nope'"):
        module.launch("nope", 1, 1, device="cpu")
    with pytest.raises(KernelSourceError, match="more than 1024"):
        module.launch("saxpy", 1, (64, 32), 4, 1.0, x, x, device="cpu")
    with pytest.raises(KernelSourceError, match="no __local parameter"):
        module.launch("saxpy", 1, 4, 4, 1.0, x, x, shared_bytes=16, device="cpu")
    with pytest.raises(Exception, match="not present"):
        module.launch("saxpy", 1, 4, 4, 1.0, x, x, device="cuda:3")


@pytest.mark.parametrize(
    "text, message",
    [
        ("int f(int x) { return x; }", "no __kernel function"),
        ("__kernel void k(__global float *x { }", "never closed"),
        ("__kernel void k(float *x) { }", "must be __global or __local"),
        ("__kernel void k(__global half *x) { }", "type 'half'"),
        ("__kernel void k(__local float *a, __global float *x) { }", "only last"),
        ("__kernel void k(__global float *x) { } __kernel void k(__global float *x) { }", "defined twice"),
        ('#include "/etc/passwd"\n__kernel void k(__global float *x) { }', "#include is not part of the form"),
        ('#line 1 "x"\n__kernel void k(__global float *x) { }', "#line is not part of the form"),
    ],
)
def test_a_source_outside_the_form_is_one_error_line(text, message):
    with pytest.raises(KernelSourceError, match=message) as info:
        KernelSource(text, "bad.hk")
    assert str(info.value).startswith("bad.hk:") and "\n" not in str(info.value)


def test_a_kernel_the_compiler_refuses_names_the_line(tmp_path):
    module = hamr.kernels.from_source("__kernel void k(__global float *x) { x[0] = undefined_name; }", "bad")
    with pytest.raises(Exception, match="undefined_name") as info:
        module.launch("k", 1, 1, np.zeros(1, np.float32), device="cpu")
    assert "\n" not in str(info.value)


def test_a_grid_kernel_outside_the_model_rules_is_a_custom_op_error():
    from hamr.ops import GridKernel, Launch

    with pytest.raises(CustomOpError, match="sizes its local memory statically"):
        GridKernel(SOURCE, "reduce_sum", lambda s, a: Launch((1,), (1,)))
    with pytest.raises(CustomOpError, match="no kernel 'missing'"):
        GridKernel(SOURCE, "missing", lambda s, a: Launch((1,), (1,)))
    with pytest.raises(CustomOpError, match="buffers come first"):
        GridKernel(SOURCE, "saxpy", lambda s, a: Launch((1,), (1,)))


@pytest.mark.parametrize("device", DEVICES)
def test_a_barrier_behind_the_sources_own_macro_still_synchronises(device):
    module = hamr.kernels.from_source(
        r"""
        #define SYNC() barrier(CLK_LOCAL_MEM_FENCE)
        #define STEP(V) (V) += H_SHFL_XOR((V), 1)
        __kernel void reverse(__global int *x) {
          __local int tile[64];
          int i = get_local_id(0);
          tile[i] = x[i];
          SYNC();
          int v = tile[63 - i];
          STEP(v);
          x[i] = v;
        }
        """
    )
    x = np.arange(64, dtype=np.int32)
    module.launch("reverse", 1, 64, x, device=device)
    rev = np.arange(64)[::-1]
    np.testing.assert_array_equal(x, rev + rev[np.arange(64) ^ 1])


def test_a_barrier_hamr_cannot_see_fails_the_cpu_launch_instead_of_racing():
    pasted = "#define PASTE(A, B) A##B\n__kernel void k(__global int *x) { PASTE(bar, rier)(CLK_LOCAL_MEM_FENCE); x[0] = 1; }"
    module = hamr.kernels.from_source(pasted)
    with pytest.raises(KernelError, match="reached a barrier hamr did not see") as info:
        module.launch("k", 1, 2, np.zeros(1, np.int32), device="cpu")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("device", DEVICES)
def test_a_typed_pointer_into_dynamic_local_memory_and_the_float_constants(device):
    module = hamr.kernels.from_source(
        r"""
        __kernel void mirror(__global float *x, __local uchar *smem) {
          __local float *buf = (__local float *)smem;
          int i = get_local_id(0);
          buf[i] = isinf(INFINITY) && isnan(NAN) ? 2.0f * x[i] : -1.0f;
          barrier(CLK_LOCAL_MEM_FENCE);
          x[i] = buf[31 - i];
        }
        """
    )
    x = np.arange(32, dtype=np.float32)
    module.launch("mirror", 1, 32, x, shared_bytes=128, device=device)
    np.testing.assert_array_equal(x, 2 * np.arange(32, dtype=np.float32)[::-1])


@pytest.mark.skipif(nvrtc.module() is None, reason=f"NVRTC is not installed ({nvrtc.EXTRA})")
def test_a_launch_on_a_cuda_gpu_passes_typed_scalars_through_the_driver(monkeypatch):
    """Without a GPU: the recording driver of tests/targets stands in for CUDA's. The cubin built for the
    GPU's architecture is loaded, buffers go in and come back, and each scalar travels as its own C type."""
    import struct

    from tests.targets.fake_cuda import FakeCudaDriver

    fake = FakeCudaDriver(capability=(9, 0))
    fake.expect([{"name": "saxpy", "params": ["n", "a", "x", "y"]}])
    monkeypatch.setattr("hamr.targets.cuda.driver.driver_module", lambda: fake)
    module = hamr.kernels.from_source(SOURCE)
    x, y = np.arange(8, dtype=np.float32), np.ones(8, np.float32)
    module.launch("saxpy", 1, 32, 8, 2.5, x, y, device="cuda:0")
    assert fake.modules == [module.compile_for("cuda", "sm_90")["sm_90"]]
    (launch,) = fake.launches
    assert launch["function"] == "saxpy" and launch["grid"] == (1, 1, 1) and launch["block"] == (32, 1, 1)
    n, a = (value & 0xFFFFFFFF for value in launch["args"][:2])
    assert n == 8 and struct.unpack("<f", a.to_bytes(4, "little"))[0] == 2.5
    np.testing.assert_array_equal(y, 1)  # the fake runs nothing: the copy back is the copy in


def test_launching_a_kernel_the_converter_refused_names_the_refusal(tmp_path):
    pytest.importorskip("clang.cindex", reason="libclang is not installed (pip install 'hamr[kernels]')")
    source = tmp_path / "mixed.cu"
    source.write_text(
        "__global__ void good(float *x) { x[threadIdx.x] *= 2.0f; }\n"
        '__global__ void bad(float *x) { printf("hi"); x[0] = 1; }\n'
    )
    module = hamr.kernels.load(source)
    x = np.ones(4, np.float32)
    module.launch("good", 1, 4, x, device="cpu")
    np.testing.assert_array_equal(x, 2)
    with pytest.raises(KernelSourceError, match=r"not among those converted \(good\).*mixed.cu:2: printf: refused"):
        module.launch("bad", 1, 1, x, device="cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_warp_votes_bit_intrinsics_and_bitwise_atomics(device):
    from tests.kernels.portable_samples import VOTES

    module = hamr.kernels.from_source(VOTES)
    x = np.random.default_rng(5).standard_normal(128).astype(np.float32)
    x[32:64] = np.abs(x[32:64]) + 3  # a warp where every lane is positive and above 2
    ballot, any_all = np.zeros(128, np.uint32), np.zeros(256, np.int32)
    bits, masks = np.zeros(384, np.int32), np.array([0, 0xFFFFFFFF, 0], np.uint32)
    module.launch("votes", 2, 64, x, ballot, any_all, bits, masks, device=device)
    lanes = (x > 0).reshape(4, 32)
    want = np.array([sum(1 << k for k in range(32) if row[k]) for row in lanes], np.uint32)
    np.testing.assert_array_equal(ballot, np.repeat(want, 32))
    np.testing.assert_array_equal(any_all[0::2], np.repeat((x > 2).reshape(4, 32).any(axis=1), 32))
    assert (any_all[1::2] == 1).all()
    popc = np.array([bin(int(w)).count("1") for w in want])
    clz = np.array([32 - int(w).bit_length() for w in want])
    ffs = np.array([(int(w) & -int(w)).bit_length() for w in want])
    np.testing.assert_array_equal(bits.reshape(128, 3), np.repeat(np.stack([popc, clz, ffs], 1), 32, axis=0))
    assert masks[0] == np.bitwise_or.reduce(want) and masks[1] == np.bitwise_and.reduce(want | 1)
    assert masks[2] == np.bitwise_xor.reduce(want)


@pytest.mark.skipif(nvrtc.module() is None or not clang.available(), reason="NVRTC or a HIP-capable clang is missing")
def test_the_votes_build_for_both_gpu_dialects():
    from tests.kernels.portable_samples import VOTES

    module = hamr.kernels.from_source(VOTES)
    assert module.compile_for("cuda", "sm_80")["sm_80"]
    assert all(module.compile_for("rocm", arch)[arch] for arch in ("gfx90a", "gfx1100"))


@pytest.mark.parametrize(
    "ctype, dtype",
    [("char", np.int8), ("uchar", np.uint8), ("short", np.int16), ("ushort", np.uint16), ("unsigned int", np.uint32),
     ("ulong", np.uint64), ("double", np.float64)],
)  # fmt: skip
def test_each_buffer_type_takes_the_numpy_dtype_of_its_c_type(ctype, dtype):
    module = hamr.kernels.from_source(
        f"__kernel void inc(__global {ctype} *x) {{ int i = get_global_id(0); x[i] = x[i] + 1; }}"
    )
    x = np.arange(8, dtype=dtype)
    module.launch("inc", 1, 8, x, device="cpu")
    np.testing.assert_array_equal(x, np.arange(1, 9, dtype=dtype))
    with pytest.raises(KernelSourceError, match="the array is"):
        module.launch("inc", 1, 8, x.astype(np.float32 if dtype != np.float32 else np.int32), device="cpu")
