"""The kernel of a strided view copied out (Transpose, Slice, Expand, DepthToSpace, SpaceToDepth).

At plan time the view's axes are merged: size-1 axes dropped, and neighbours that are contiguous
in the input joined into one. What is left is usually a rank-1 to rank-3 copy, which the C kernel
runs without an index division per element:

- *rows*: one division per output row (all axes but the last), then a contiguous or strided run;
- *tiles*: when the input's contiguous axis `q` is not the output's last one (a real transpose),
  TILE x TILE blocks of (q, last), so that reads and writes both stay in cache.

The OpenCL kernel keeps one work item per element, over the merged axes.

Parameters: n, merged rank K, base offset, q (-1: rows), then dims[rank] and input strides[rank]
with the merged axes first.
"""

from __future__ import annotations

from hamr.ir.dtypes import buffer_ctype
from hamr.targets.native.ops.base import Kernel, Source

TILE = 32
MIN_TILED = 8  # both tiled axes at least this long, else rows

C_STRIDED = """static void $name(const i64 *p, const $T *in0, $T *out0$extra) {
  const i64 n = p[0], K = p[1], base = p[2], q = p[3];
  const i64 *D = p + 4, *M = p + 4 + $R;
  if (n == 0) return;
  const i64 L = D[K - 1], ML = M[K - 1];
  if (q < 0) {
    const i64 rows = n / L;
    #pragma omp parallel for schedule(static) if(n > PARALLEL_THRESHOLD)
    for (i64 r = 0; r < rows; r++) {
      i64 rem = r, off = base;
      for (i64 a = K - 2; a >= 0; a--) { off += (rem % D[a]) * M[a]; rem /= D[a]; }
      const $T *src = in0 + off;
      $T *dst = out0 + r * L;
      if (ML == 1) { for (i64 j = 0; j < L; j++) dst[j] = src[j]; }
      else { for (i64 j = 0; j < L; j++) dst[j] = src[j * ML]; }
    }
    return;
  }
  const i64 Q = D[q], tq = (Q + $TILE - 1) / $TILE, tl = (L + $TILE - 1) / $TILE;
  i64 OQ = 1;
  for (i64 a = q + 1; a < K; a++) OQ *= D[a];
  const i64 items = n / (Q * L) * tq * tl;
  #pragma omp parallel for schedule(static) if(n > PARALLEL_THRESHOLD)
  for (i64 it = 0; it < items; it++) {
    const i64 t2 = it % tl, t1 = (it / tl) % tq;
    i64 rem = it / (tl * tq), ioff = base, ooff = 0, os = L;
    for (i64 a = K - 2; a >= 0; a--) {
      if (a != q) { const i64 c = rem % D[a]; rem /= D[a]; ioff += c * M[a]; ooff += c * os; }
      os *= D[a];
    }
    const i64 i1 = H_MIN(t1 * $TILE + $TILE, Q), j1 = H_MIN(t2 * $TILE + $TILE, L);
    for (i64 i = t1 * $TILE; i < i1; i++) {
      const $T *src = in0 + ioff + i;
      $T *dst = out0 + ooff + i * OQ;
      for (i64 j = t2 * $TILE; j < j1; j++) dst[j] = src[j * ML];
    }
  }
}
"""

CL_STRIDED = """__kernel void $name(__global const long *P, const long poff, __global const $T *in0, __global $T *out0$extra) {
  __global const long *p = P + poff;
  const i64 gid = get_global_id(0);
  if (gid >= p[0]) return;
  i64 r_ = gid, off = p[2];
  for (i64 a = p[1] - 1; a >= 0; a--) { const i64 d = p[4 + a]; off += (r_ % d) * p[4 + $R + a]; r_ /= d; }
  out0[gid] = in0[off];
}
"""


def merged(dims: list[int], strides: list[int]) -> tuple[list[int], list[int]]:
    """The same copy over fewer axes: size-1 axes dropped, input-contiguous neighbours joined."""
    out_dims: list[int] = []
    out_strides: list[int] = []
    for d, m in zip(dims, strides):
        if d == 1:
            continue
        if out_dims and out_strides[-1] == m * d:
            out_dims[-1] *= d
            out_strides[-1] = m
        else:
            out_dims.append(d)
            out_strides.append(m)
    return out_dims or [1], out_strides or [0]


def tiled_axis(dims: list[int], strides: list[int]) -> int:
    """The axis to tile against the last one (it is contiguous in the input), or -1 for rows."""
    if len(dims) < 2 or strides[-1] == 1 or dims[-1] < MIN_TILED:
        return -1
    for a in range(len(dims) - 2, -1, -1):
        if strides[a] == 1 and dims[a] >= MIN_TILED:
            return a
    return -1


def strided_params(dims: list[int], base: int, strides: list[int], rank: int) -> list[int]:
    n = 1
    for d in dims:
        n *= int(d)
    d, m = merged([int(x) for x in dims], [int(x) for x in strides])
    slots = max(rank, 1)
    pad = slots - len(d)
    return [n, len(d), base, tiled_axis(d, m), *d, *([1] * pad), *m, *([0] * pad)]


def strided_kernel(node, rank: int, layout, label: str) -> Kernel:
    """`layout(pc)` -> (iteration dims in output order, base offset, input stride per dim)."""

    def params(pc):
        dims, base, mults = layout(pc)
        if len(dims) != rank:
            raise ValueError(f"{node.op}: rank {len(dims)}, compiled for {rank}")
        return strided_params(dims, base, mults, rank)

    values = {"T": buffer_ctype(node.out_dtype(0)), "R": max(rank, 1), "TILE": TILE}
    return Kernel(
        [node.inputs[0]],
        [node.outputs[0]],
        4 + 2 * max(rank, 1),
        params,
        sources={
            "c": Source(C_STRIDED, values),
            "opencl": Source(CL_STRIDED, values, lambda p: ((int(p[0]),), None)),
        },
        label=label,
    )


STRIDED_DIALECTS = ("c", "opencl")
