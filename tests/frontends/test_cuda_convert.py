"""hamr.frontends.cuda and `hamr convert`: each CUDA construct's portable spelling, refusals with their lines,
host code skipped and reported, templates instantiated, bad input one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("clang.cindex", reason="libclang is not installed (pip install 'hamr[kernels]')")

from hamr.errors import KernelSourceError  # noqa: E402
from hamr.frontends.cuda import convert, convert_file, read_hk  # noqa: E402


def refused(conversion) -> dict[int, str]:
    return {c.line: c.construct for c in conversion.refused}


def kernel_text(conversion, name: str) -> str:
    start = conversion.source.index(f"__kernel void {name}(")
    end = conversion.source.find("\n}\n", start)
    return conversion.source[start : end + 3 if end > 0 else conversion.source.find("\n", start)]


def test_builtins_shared_memory_barriers_and_math():
    c = convert(
        """#define TILE 16
__global__ void k(const float *__restrict__ x, float *y, int n) {
  __shared__ float tile[TILE][TILE + 1];
  int i = blockIdx.y * blockDim.x + threadIdx.x + gridDim.z;
  tile[threadIdx.y][threadIdx.x] = expf(x[i]) + sqrtf(fabsf(x[i])) + __fdividef(x[i], 3.0f) + __ldg(&x[i]);
  __syncthreads();
  y[i] = fmaxf(tile[0][0], rsqrtf(2.0f)) + min(i, n) + (float)warpSize;
}
""",
        "k.cu",
    )
    text = kernel_text(c, "k")
    assert c.kernels == ["k"] and not c.refused
    assert "#define TILE 16" in c.source
    assert "__kernel void k(__global const float * x, __global float *y, int n)" in text
    assert "__local float tile[TILE][TILE+1];" in text
    for spelling in (
        "((unsigned)get_group_id(1))",
        "((unsigned)get_local_size(0))",
        "((unsigned)get_local_id(0))",
        "((unsigned)get_num_groups(2))",
        "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)",
        "exp(x[i])",
        "sqrt(fabs(x[i]))",
        "((x[i]) / (3.0f))",
        "(*(&x[i]))",
        "fmax(",
        "rsqrt(2.0f)",
        "H_MIN(i, n)",
        "H_WARP_SIZE",
    ):
        assert spelling in text, spelling
    assert "__restrict__" not in text and "__syncthreads" not in text


def test_extern_shared_becomes_the_last_parameter_and_nested_shared_is_hoisted():
    c = convert(
        """__global__ void k(float *y) {
  extern __shared__ float dyn[];
  if (blockIdx.x == 0) {
    __shared__ int flag[4];
    flag[threadIdx.x % 4] = 1;
    dyn[threadIdx.x] = flag[0];
  }
}
""",
        "k.cu",
    )
    text = kernel_text(c, "k")
    assert text.startswith("__kernel void k(__global float *y, __local float *dyn) {\n  __local int flag[4];")
    assert "extern" not in text and text.count("__local int flag[4];") == 1


def test_atomics_warp_shuffles_and_float4_loads():
    c = convert(
        """#define FULL 0xffffffff
__global__ void k(const float *x, float *sum, int *mx, unsigned *cnt, float4 *o) {
  float v = x[threadIdx.x];
  for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(FULL, v, d);
  v += __shfl_xor_sync(0xffffffff, v, 1, 32) + __shfl_sync(0xffffffff, v, 0) + __shfl_up_sync(0xffffffff, v, 1);
  atomicAdd(sum, v);
  atomicMax(mx, (int)v);
  atomicInc(cnt, 0xffffffff);
  float4 q = reinterpret_cast<const float4 *>(x)[threadIdx.x];
  o[0] = q;
}
""",
        "k.cu",
    )
    text = kernel_text(c, "k")
    assert not c.refused
    for spelling in (
        "H_SHFL_DOWN(v, d)",
        "H_SHFL_XOR(v, 1)",
        "H_SHFL(v, 0)",
        "H_SHFL_UP(v, 1)",
        "H_ATOMIC_ADD(sum, v)",
        "H_ATOMIC_MAX(mx, (int)v)",
        "H_ATOMIC_INC(cnt)",
        "((__global const float4 *)(x))[",
    ):
        assert spelling in text, spelling


def test_helpers_get_address_spaces_from_their_calls_and_run(tmp_path):
    import hamr.kernels

    source = """__device__ float pair(const float *p, int i) { return p[i] + p[i + 1]; }
__global__ void k(const float *x, float *y) {
  __shared__ float s[33];
  s[threadIdx.x] = x[threadIdx.x];
  if (threadIdx.x == 0) s[32] = 0.0f;
  __syncthreads();
  y[threadIdx.x] = pair(s, threadIdx.x) + pair(x, 0);
}
"""
    c = convert(source, "k.cu")
    assert "H_DEVICE float pair(__local const float *p, int i)" in c.source
    assert "H_DEVICE float pair_g(__global const float *p, int i)" in c.source
    path = tmp_path / "k.hk"
    path.write_text(c.to_json())
    x, y = np.arange(32, dtype=np.float32), np.zeros(32, np.float32)
    hamr.kernels.load(path).launch("k", (1,), (32,), x, y, device="cpu")
    np.testing.assert_allclose(y, np.append(x, 0)[:32] + np.append(x, 0)[1:] + x[0] + x[1])


def test_shared_memory_of_a_helper_is_declared_by_the_kernel_and_divergent_calls_are_if_converted():
    c = convert(
        """__device__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
  return v;
}
__device__ float blockSum(float v) {
  static __shared__ float part[32];
  int lane = threadIdx.x % 32, wid = threadIdx.x / 32;
  v = warpSum(v);
  if (lane == 0) part[wid] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? part[lane] : 0.0f;
  if (wid == 0) v = warpSum(v);
  return v;
}
__global__ void k(const float *x, float *out) {
  float s = blockSum(x[threadIdx.x]);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}
""",
        "k.cu",
    )
    assert "H_DEVICE float blockSum(float v, __local float *part)" in c.source
    assert "{ float hamr_t0 = warpSum(v); if (wid == 0) v = hamr_t0; }" in c.source
    text = kernel_text(c, "k")
    assert "__local float hamr_blockSum_part[32];" in text
    assert "blockSum(x[((unsigned)get_local_id(0))], hamr_blockSum_part)" in text
    assert any(x.construct == "warp shuffle under a branch" and x.line == 12 for x in c.constructs)


def test_templates_are_instantiated_from_explicit_instantiations_and_launches():
    c = convert(
        """template <typename T, int BLOCK>
__global__ void fill(T *y, T v) {
  __shared__ T buf[BLOCK];
  buf[threadIdx.x] = v;
  __syncthreads();
  y[threadIdx.x] = buf[BLOCK - 1 - threadIdx.x];
}
template __global__ void fill<float, 64>(float *, float);
template <typename T> __device__ T twice(T v) { return v + v; }
template <typename T> __global__ void dbl(T *y) { y[threadIdx.x] = twice(y[threadIdx.x]); }
void host(int *p, double *q) {
  fill<int, 32><<<1, 32>>>(p, 7);
  dbl<double><<<1, 32>>>(q);
}
""",
        "t.cu",
    )
    assert c.kernels == ["fill_float_64", "fill_int_32", "dbl_double"]
    assert "__local float buf[64];" in kernel_text(c, "fill_float_64")
    assert "__kernel void fill_int_32(__global int *y, int v)" in c.source
    assert "H_DEVICE double twice_double(double v)" in c.source
    assert "twice_double(y[" in kernel_text(c, "dbl_double")


def test_constants_become_defines():
    c = convert(
        "const int BLOCK = 128;\nconstexpr float SCALE = 0.5f;\n__global__ void k(float *y) { y[0] = BLOCK * SCALE; }\n"
    )
    assert "#define BLOCK (128)" in c.source and "#define SCALE (0.5f)" in c.source


REFUSALS = """#include <cstdio>
__constant__ float coef[4];
__global__ void uses_printf(float *y) { printf("%f\\n", y[0]); }
__global__ void uses_constant(float *y) { y[0] = coef[1]; }
__global__ void partial_mask(float *y) { y[0] = __shfl_down_sync(0x0000ffff, y[0], 1); }
__global__ void narrow(float *y) { y[0] = __shfl_xor_sync(0xffffffff, y[0], 1, 16); }
__global__ void double_atomic(double *y) { atomicAdd(y, 1.0); }
__global__ void child(float *y) { y[0] = 1; }
__global__ void parent(float *y) { child<<<1, 1>>>(y); }
__device__ float wsum(float v) { return v + __shfl_down_sync(0xffffffff, v, 1); }
__global__ void divergent(float *y) { if (threadIdx.x < 32) { float v = wsum(y[0]); y[0] = v; } }
__device__ int fact(int n) { return n <= 1 ? 1 : n * fact(n - 1); }
__global__ void recursive(int *y) { y[0] = fact(5); }
__global__ void ptx(int *y) { asm volatile("trap;"); }
__global__ void texture(float *y) { y[0] = tex1Dfetch(0, 1); }
template <typename T> __global__ void never(T *y) { y[0] = 0; }
__global__ void fine(float *y) { y[threadIdx.x] = 1.0f; }
int main() {
  float *d;
  cudaMalloc(&d, 4);
  fine<<<1, 32>>>(d);
  return 0;
}
"""


def test_refusals_are_reported_with_their_lines_and_the_rest_converts():
    c = convert(REFUSALS, "mixed.cu")
    assert c.kernels == ["child", "fine"]
    lines = refused(c)
    assert lines[2].startswith("__constant__ variable coef")
    assert lines[3] == "printf"
    assert lines[4] == "global variable coef"
    assert lines[5] == "__shfl_down_sync" and lines[6] == "__shfl_xor_sync"
    assert lines[7] == "atomicAdd on double"
    assert lines[9] == "kernel launch"
    assert lines[11].startswith("warp shuffle under a branch")
    assert lines[12] == "call to fact"
    assert lines[14] == "asm"
    assert lines[15] == "tex1Dfetch"
    assert lines[16] == "template kernel never"
    assert "printf" not in c.source and "coef" not in c.source and "fact" not in c.source
    skipped = [x for x in c.constructs if x.status == "skipped"]
    assert any(x.construct == "#include <cstdio>" and x.line == 1 for x in skipped)
    host = next(x for x in skipped if x.construct == "host function main")
    assert host.line == 18 and host.detail == "not a kernel; launch from Python with hamr.kernels"
    assert str(host) == "mixed.cu:18: host function main: skipped (not a kernel; launch from Python with hamr.kernels)"
    assert c.rate.kernels == 13 and c.rate.kernels_converted == 2 and 0 < c.rate.lines < 1


def test_hk_file_round_trip_and_bad_files(tmp_path):
    c = convert("__global__ void k(float *y) { y[0] = 1.0f; }\n", "one.cu")
    doc = json.loads(c.to_json())
    assert doc["format"] == "hamr-kernels" and doc["version"] == 1 and doc["kernels"] == ["k"]
    assert doc["origin"]["file"] == "one.cu" and len(doc["origin"]["sha256"]) == 64
    assert doc["report"]["rate"]["kernels_converted"] == 1
    path = tmp_path / "one.hk"
    path.write_text(c.to_json())
    assert read_hk(path) == (c.source, ["k"])
    for content, message in (
        ("{not json", "not JSON"),
        ('{"format": "other"}', "format is not"),
        ('{"format": "hamr-kernels", "version": 9}', "version 9"),
        ('{"format": "hamr-kernels", "version": 1, "source": 3}', "corrupt"),
    ):
        path.write_text(content)
        with pytest.raises(KernelSourceError, match=message) as info:
            read_hk(path)
        assert "\n" not in str(info.value)


def test_unparseable_and_binary_files_are_one_error_line(tmp_path):
    with pytest.raises(KernelSourceError, match=r"garbage.cu:1: cannot parse as CUDA") as info:
        convert("}}} this is not C++ {{{\n", "garbage.cu")
    assert "\n" not in str(info.value)
    path = tmp_path / "bin.cu"
    path.write_bytes(b"\x7fELF\x00\x01\xff\xfe")
    with pytest.raises(KernelSourceError, match="not a CUDA source file"):
        convert_file(path)
    with pytest.raises(KernelSourceError, match="cannot read"):
        convert_file(tmp_path / "missing.cu")


def test_missing_libclang_says_what_to_install(monkeypatch):
    from hamr.frontends.cuda import parse

    monkeypatch.setitem(sys.modules, "clang", None)
    with pytest.raises(KernelSourceError, match=r"pip install 'hamr\[kernels\]'"):
        parse.cindex()


def hamr_cli(*args, cwd):
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "hamr.cli.app", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_cli_converts_reports_and_exits_non_zero_when_nothing_converts(tmp_path):
    (tmp_path / "mixed.cu").write_text(REFUSALS)
    done = hamr_cli("convert", "mixed.cu", "-o", "mixed.hk", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "mixed.cu:3" in done.stdout and "refused" in done.stdout and "2/13 kernels" in done.stdout
    assert read_hk(tmp_path / "mixed.hk")[1] == ["child", "fine"]
    done = hamr_cli("convert", "mixed.cu", "--json", cwd=tmp_path)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["rate"]["kernels"] == 13 and (tmp_path / "mixed.hk").exists()
    assert {"file", "line", "construct", "status", "detail"} <= set(report["constructs"][0])
    (tmp_path / "bad.cu").write_text('__global__ void k(float *y) { printf("x"); }\n')
    done = hamr_cli("convert", "bad.cu", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "no kernel could be converted" in done.stderr and "bad.cu:1: printf" in done.stderr
    (tmp_path / "junk.cu").write_text("}}} not C {{{\n")
    done = hamr_cli("convert", "junk.cu", cwd=tmp_path)
    assert done.returncode == 2 and "cannot parse" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cpp_spellings_become_c():
    c = convert(
        """template <typename T> __global__ void k(T *y, const T *x, int n) {
  auto i = blockIdx.x * blockDim.x + threadIdx.x;
  const auto v = static_cast<float>(x[i]);
  if (i < n) y[i] = T(v * 2.0f) + float(1);
  bool ok = true;
  long long big = 1;
}
template __global__ void k<unsigned int>(unsigned int *, const unsigned int *, int);
""",
        "cpp.cu",
    )
    text = kernel_text(c, "k_uint")
    for spelling in (
        "__kernel void k_uint(__global uint *y, __global const uint *x, int n)",
        "unsigned int i = ",
        "const float v = ((float)(x[i]));",
        "((uint)(v * 2.0f)) + ((float)(1))",
        "int ok = 1;",
        "long big = 1;",
    ):
        assert spelling in text, spelling


def test_fast_division_and_rounded_arithmetic_become_operators():
    c = convert(
        "__global__ void k(float *y) { y[0] = __fdividef(y[1], y[2]) + __fadd_rn(y[3],y[4]) * __fmul_rn(y[5], 2.0f); }\n"
    )
    assert "((y[1]) / (y[2])) + ((y[3]) + (y[4])) * ((y[5]) * (2.0f))" in kernel_text(c, "k")


def test_warp_votes_bit_intrinsics_and_bitwise_atomics_convert():
    c = convert(
        """__global__ void k(unsigned *bits, int *y) {
  unsigned m = __ballot_sync(0xffffffff, y[threadIdx.x] > 0);
  y[threadIdx.x] = __popc(m) + __clz(m) + __ffs(m) + __any_sync(0xffffffff, 1) + __all_sync(0xffffffff, 0);
  atomicOr(&bits[0], m); atomicAnd(&bits[1], m); atomicXor(&bits[2], m);
}
""",
        "votes.cu",
    )
    assert not c.refused
    text = kernel_text(c, "k")
    for spelling in (
        "H_BALLOT(y[",
        "H_POPC(m) + H_CLZ(m) + H_FFS(m) + H_ANY(1) + H_ALL(0)",
        "H_ATOMIC_OR(&bits[0], m)",
    ):
        assert spelling in text, spelling
    assert "H_ATOMIC_AND(&bits[1], m)" in text and "H_ATOMIC_XOR(&bits[2], m)" in text


UNSUPPORTED = """__global__ void k_half(__half *y) { y[0] = y[1]; }
__global__ void k_half2(float *y) { half2 h; y[0] = 1; }
__global__ void k_bf16(__nv_bfloat16 *y) { y[0] = y[1]; }
__global__ void k_count(int *y) { y[0] = __syncthreads_count(y[threadIdx.x] > 0); }
__global__ void k_and(int *y) { y[0] = __syncthreads_and(1) + __syncthreads_or(0); }
__global__ void k_ballot(int *y) { y[0] = __ballot_sync(0xffff, y[threadIdx.x] > 0); }
__global__ void k_any(int *y) { y[0] = __any_sync(0x0000ffff, 1) + __all_sync(0xffffffff, 1); }
__global__ void k_active(int *y) { y[0] = __activemask(); }
__global__ void k_clock(long *y) { y[0] = clock(); }
__global__ void k_clock64(long *y) { y[0] = clock64(); }
__global__ void k_fence(int *y) { y[0] = 1; __threadfence(); }
__global__ void k_named_half(int *y, int n) { int half = n / 2; y[0] = half; }
"""


def test_constructs_outside_the_form_are_refused_with_a_reason():
    c = convert(UNSUPPORTED, "u.cu")
    assert c.kernels == ["k_named_half"]
    why = {x.line: (x.construct, x.detail) for x in c.refused}
    for line, construct, reason in (
        (1, "__half", "half precision (__half) is not in the portable form"),
        (2, "half2", "half precision (half2) is not in the portable form"),
        (3, "__nv_bfloat16", "bfloat16 (__nv_bfloat16) is not in the portable form"),
        (4, "__syncthreads_count", "barriers that count or vote are not in the portable form"),
        (5, "__syncthreads_and", "barriers that count or vote are not in the portable form"),
        (6, "__ballot_sync", "mask 0xffff is not the full warp"),
        (7, "__any_sync", "mask 0x0000ffff is not the full warp"),
        (8, "__activemask", "not in the portable form yet"),
        (9, "clock", "timers are not in the portable form"),
        (10, "clock64", "timers are not in the portable form"),
        (11, "__threadfence", "a fence orders memory, it is not a barrier"),
    ):
        assert why[line][0] == construct and reason in why[line][1], (line, why[line])


DIVERGENT = """__device__ float wsum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
  return v;
}
__device__ void publish(float *s, float v) { s[threadIdx.x] = v; __syncthreads(); }
__device__ float rounds(float v, int first) { for (int i = first; i < 4; ++i) v = wsum(v); return v; }
__global__ void early_return(const float *x, float *y, int n) {
  int tid = blockIdx.x * blockDim.x + threadIdx.x;
  if (tid >= n) return;
  y[tid] = wsum(x[tid]);
}
__global__ void early_return_before_a_helper_barrier(float *y, int n) {
  __shared__ float s[64];
  if (threadIdx.x >= n) return;
  publish(s, y[threadIdx.x]);
}
__global__ void strided_shuffle(const float *x, float *y, int n) {
  float acc = 0.0f;
  for (int i = threadIdx.x % 32; i < n; i += 32) {
    acc += x[i];
    acc = wsum(acc);
  }
  y[threadIdx.x] = acc;
}
__global__ void barrier_in_branch(float *y, int n) {
  __shared__ float s[64];
  int i = threadIdx.x;
  if (i < n) {
    s[i] = y[i];
    __syncthreads();
    y[i] = s[n - 1 - i];
  }
}
__global__ void break_out(float *y, int n) {
  float v = y[threadIdx.x];
  for (int k = 0; k < n; ++k) {
    if (v > threadIdx.x) break;
    v = wsum(v);
  }
  y[threadIdx.x] = v;
}
__global__ void continue_past(float *y, int n) {
  __shared__ float s[64];
  for (int k = 0; k < n; ++k) {
    if (threadIdx.x == k) continue;
    s[threadIdx.x] = y[k];
    __syncthreads();
  }
}
__global__ void through_a_parameter(float *y) { y[threadIdx.x] = rounds(y[threadIdx.x], threadIdx.x % 4); }
__global__ void in_a_conditional(float *y) { y[threadIdx.x] = threadIdx.x < 16 ? wsum(y[0]) : 0.0f; }
"""


def test_divergence_the_emulation_cannot_run_is_refused_with_its_line():
    c = convert(DIVERGENT, "div.cu")
    assert c.kernels == []
    why = {x.line: (x.construct, x.detail) for x in c.refused}
    for line, construct, reason in (
        (9, "return under a branch on the thread index", "never reach the warp shuffle in wsum at line 10"),
        (14, "return under a branch on the thread index", "never reach the barrier in publish at line 15"),
        (21, "warp shuffle in a loop on the thread index", "the loop at line 19 runs a different number of times"),
        (30, "__syncthreads under a branch on the thread index", "take the branch at line 28"),
        (37, "break under a branch on the thread index", "skip the warp shuffle in wsum at line 38"),
        (45, "continue under a branch on the thread index", "skip __syncthreads at line 47"),
        (6, "warp shuffle in a loop on the thread index", "the loop at line 6"),
        (51, "warp shuffle under a condition on the thread index", "the condition at line 51"),
    ):
        assert why[line][0] == construct and reason in why[line][1], (line, why[line])
        assert "every work-item of the group must reach" in why[line][1]
    assert "kernel through_a_parameter not converted" in why[6][1]


def test_uniform_control_flow_around_shuffles_and_barriers_still_converts(tmp_path):
    import hamr.kernels

    source = """__device__ float wsum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
  return v;
}
__device__ float rounds(float v, int first) { for (int i = first; i < 2; ++i) v = wsum(v); return v; }
__global__ void k(const float *x, float *y, int n, int rounds_from) {
  __shared__ float s[64];
  int tid = blockIdx.x * blockDim.x + threadIdx.x;
  int lane = threadIdx.x % 32;
  if (blockIdx.x >= gridDim.x) return;
  float acc = 0.0f;
  for (int c = lane; c < n; c += 32) acc += x[c];
  for (int k = 0; k < 2; ++k) {
    s[threadIdx.x] = acc;
    __syncthreads();
  }
  acc = rounds(acc, rounds_from);
  if (lane == 0) acc = wsum(acc);
  if (tid < n) {
    y[tid] = acc + s[0];
  }
  if (tid >= n) return;
  y[tid] += 0.0f;
}
"""
    c = convert(source, "k.cu")
    assert c.kernels == ["k"] and not c.refused
    assert "{ float hamr_t0 = wsum(acc); if (lane == 0) acc = hamr_t0; }" in c.source
    path = tmp_path / "k.hk"
    path.write_text(c.to_json())
    x, y = np.arange(64, dtype=np.float32), np.zeros(64, np.float32)
    hamr.kernels.load(path).launch("k", (1,), (64,), x, y, np.int32(64), np.int32(2), device="cpu")
    lane_sums = np.array([x[i::32].sum() for i in range(32)] * 2, np.float32)
    want = lane_sums.copy()
    want[[0, 32]] = lane_sums[:32].sum()  # lane 0 of each warp: the warp's sum
    np.testing.assert_allclose(y, want + lane_sums[0], rtol=1e-5)
