"""What the OpenCL device here makes of GEMM kernel designs: GFLOP/s of a float32 M x K x N product per design,
beside hamr's cpu target on the same product. The evidence behind the OpenCL GEMM in ops/linalg.py.

    python bench/opencl_gemm.py [--size 512] [--runs 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def local_tiles(ts: int, ri: int, rj: int, kt: int) -> str:
    """A GPU textbook kernel: the work-group stages tiles of A and B in local memory; each item ri x rj outputs."""
    return f"""
__kernel __attribute__((reqd_work_group_size({ts}, {ts}, 1)))
void g(__global const float *A, __global const float *B, __global float *C, int M, int N, int K) {{
  const int lc = get_local_id(0), lr = get_local_id(1), item = lr * {ts} + lc;
  const int col0 = get_group_id(0) * {ts * rj}, row0 = get_group_id(1) * {ts * ri};
  __local float As[{kt}][{ts * ri} + 1];
  __local float Bs[{kt}][{ts * rj} + 1];
  float s[{ri}][{rj}];
  for (int i = 0; i < {ri}; i++) for (int j = 0; j < {rj}; j++) s[i][j] = 0;
  for (int t = 0; t < K; t += {kt}) {{
    for (int e = item; e < {kt * ts * ri}; e += {ts * ts}) {{
      int kk = e % {kt}, rr = e / {kt}; As[kk][rr] = A[(row0 + rr) * K + t + kk]; }}
    for (int e = item; e < {kt * ts * rj}; e += {ts * ts}) {{
      int cc = e % {ts * rj}, kb = e / {ts * rj}; Bs[kb][cc] = B[(t + kb) * N + col0 + cc]; }}
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < {kt}; k++) {{
      float a[{ri}], b[{rj}];
      for (int i = 0; i < {ri}; i++) a[i] = As[k][lr + {ts} * i];
      for (int j = 0; j < {rj}; j++) b[j] = Bs[k][lc + {ts} * j];
      for (int i = 0; i < {ri}; i++) for (int j = 0; j < {rj}; j++) s[i][j] += a[i] * b[j];
    }}
    barrier(CLK_LOCAL_MEM_FENCE);
  }}
  for (int i = 0; i < {ri}; i++) for (int j = 0; j < {rj}; j++)
    C[(row0 + lr + {ts} * i) * N + col0 + lc + {ts} * j] = s[i][j];
}}"""


def vector_types(ri: int, w: int) -> str:
    """Each item ri rows by one OpenCL vector of w columns (vload/vstore)."""
    return f"""
__kernel void g(__global const float *A, __global const float *B, __global float *C, int M, int N, int K) {{
  const int col0 = get_global_id(0) * {w}, row0 = get_global_id(1) * {ri};
  float{w} s[{ri}];
  for (int i = 0; i < {ri}; i++) s[i] = 0;
  for (int k = 0; k < K; k++) {{
    const float{w} b = vload{w}(0, B + k * N + col0);
    for (int i = 0; i < {ri}; i++) s[i] += (float{w})(A[(row0 + i) * K + k]) * b;
  }}
  for (int i = 0; i < {ri}; i++) vstore{w}(s[i], 0, C + (row0 + i) * N + col0);
}}"""


def scalar_arrays(ri: int, w: int) -> str:
    """Each item ri rows by w consecutive columns in scalar arrays, no local memory (ops/linalg.py's design)."""
    return f"""
__kernel void g(__global const float *A, __global const float *B, __global float *C, int M, int N, int K) {{
  const int c0 = get_global_id(0) * {w}, r0 = get_global_id(1) * {ri};
  float s[{ri}][{w}];
  for (int i = 0; i < {ri}; i++) for (int j = 0; j < {w}; j++) s[i][j] = 0;
  for (int k = 0; k < K; k++) {{
    float b[{w}];
    for (int j = 0; j < {w}; j++) b[j] = B[k * N + c0 + j];
    for (int i = 0; i < {ri}; i++) {{ const float a = A[(r0 + i) * K + k]; for (int j = 0; j < {w}; j++) s[i][j] += a * b[j]; }}
  }}
  for (int i = 0; i < {ri}; i++) for (int j = 0; j < {w}; j++) C[(r0 + i) * N + c0 + j] = s[i][j];
}}"""


def main() -> None:
    import pyopencl as cl

    import hamr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = args.size
    device = cl.get_platforms()[0].get_devices()[0]
    ctx = cl.Context([device])
    queue = cl.CommandQueue(ctx)
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    flags = cl.mem_flags
    da = cl.Buffer(ctx, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=a)
    db = cl.Buffer(ctx, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=b)
    dc = cl.Buffer(ctx, flags.WRITE_ONLY, size=a.nbytes)
    flop = 2.0 * n**3
    print(f"{device.name.strip()} ({device.version.strip()}), {n}x{n}x{n} float32")
    designs = [
        ("local tiles 16x16, 1x1 per item", local_tiles(16, 1, 1, 16), (n, n), (16, 16)),
        ("local tiles 16x16, 4x4 per item", local_tiles(16, 4, 4, 16), (n // 4, n // 4), (16, 16)),
        ("float8 vectors, 8 rows per item", vector_types(8, 8), (n // 8, n // 8), None),
        ("scalar arrays, 8x16 per item", scalar_arrays(8, 16), (n // 16, n // 8), None),
    ]
    for label, text, global_size, local_size in designs:
        kernel = cl.Program(ctx, text).build().g
        call = lambda k=kernel, g=global_size, loc=local_size: k(  # noqa: E731
            queue, g, loc, da, db, dc, np.int32(n), np.int32(n), np.int32(n)
        )
        call()
        queue.finish()
        start = time.perf_counter()
        for _ in range(args.runs):
            call()
        queue.finish()
        seconds = (time.perf_counter() - start) / args.runs
        c = np.empty_like(a)
        cl.enqueue_copy(queue, c, dc)
        error = float(np.abs(c - a @ b).max())
        print(f"{label:36s} {seconds * 1e3:8.2f} ms {flop / seconds / 1e9:6.1f} GFLOP/s (max error {error:.1e})")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    session = hamr.Session(hamr.compile(model, targets=["cpu"]), device="cpu")
    for _ in range(3):
        session.run({"a": a})
    start = time.perf_counter()
    for _ in range(args.runs):
        session.run({"a": a})
    seconds = (time.perf_counter() - start) / args.runs
    print(f"{'hamr cpu target':36s} {seconds * 1e3:8.2f} ms {flop / seconds / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
