"""MatMul and Gemm: BLAS sgemm on the cpu target, a local-memory tiled GEMM on OpenCL.

Both are anchors: their result passes through STORE(gid, acc), where the fuser inserts
an elementwise epilogue (bias, activation, residual add) without another pass in memory.
Other dtypes run a plain map kernel (one output element per work item).
"""

from __future__ import annotations

from hamr.targets.native.dtypes import NUMERIC, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, broadcast_shapes, broadcast_strides, numel
from hamr.targets.native.ops.registry import register

TILE = 16

# p: [nb, M, N, K, alpha-bits unused, batch dims (R), A batch strides (R), B batch strides (R)]
_BATCH_OFFSETS = (
    "i64 oa = 0, ob = 0; {{ i64 r_ = b; for (int a_ = {R} - 1; a_ >= 0; a_--) {{ const i64 d_ = p[4 + a_]; "
    "const i64 c_ = r_ % d_; r_ /= d_; oa += c_ * p[4 + {R} + a_]; ob += c_ * p[4 + 2 * {R} + a_]; }} }}"
)

C_SGEMM = """static void {name}(const i64 *p, const f32 *in0, const f32 *in1, f32 *out0{extra}) {{
  const i64 nb = p[0], M = p[1], N = p[2], K = p[3];
  if (M * N == 0) return;
  for (i64 b = 0; b < nb; b++) {{
    """ + _BATCH_OFFSETS + """
    if (K == 0) {{ for (i64 i = 0; i < M * N; i++) out0[b * M * N + i] = 0; continue; }}
    hamr_sgemm(101, 111, 111, (int)M, (int)N, (int)K, 1.0f, in0 + oa * M * K, (int)K, in1 + ob * K * N, (int)N,
               0.0f, out0 + b * M * N, (int)N);
  }}
  STORE_ALL(nb * M * N, out0);
}}
"""

CL_GEMM = ("""__kernel __attribute__((reqd_work_group_size(""" + f"{TILE}, {TILE}" + """, 1)))
void {name}(__global const long *P, const long poff, __global const f32 *in0, __global const f32 *in1,
            __global f32 *out0{extra}) {{
  __global const long *p = P + poff;
  const long nb = p[0], M = p[1], N = p[2], K = p[3];
  const int lc = get_local_id(0), lr = get_local_id(1);
  const long col = get_group_id(0) * TS + lc, row = get_group_id(1) * TS + lr, b = get_global_id(2);
  """ + _BATCH_OFFSETS + """
  __global const f32 *A = in0 + oa * M * K;
  __global const f32 *B = in1 + ob * K * N;
  __local f32 As[TS][TS];
  __local f32 Bs[TS][TS + 1];
  f32 sum = 0;
  for (long t = 0; t < K; t += TS) {{
    As[lr][lc] = (row < M && t + lc < K) ? A[row * K + t + lc] : 0.0f;
    Bs[lr][lc] = (t + lr < K && col < N) ? B[(t + lr) * N + col] : 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = 0; k < TS; k++) sum += As[lr][k] * Bs[k][lc];
    barrier(CLK_LOCAL_MEM_FENCE);
  }}
  if (row < M && col < N) STORE(b * M * N + row * N + col, sum);
}}
""").replace("TS", str(TILE))

MAP_MATMUL = (
    "const i64 M = p[1], N = p[2], K = p[3]; const i64 b = gid / (M * N), r = (gid / N) % M, c = gid % N; "
    + _BATCH_OFFSETS.replace("{{", "{").replace("}}", "}")
    + " {T} acc = 0; for (i64 k = 0; k < K; k++) acc += in0[oa * M * K + r * K + k] * in1[ob * K * N + k * N + c];"
    " out0[gid] = acc;"
)


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _gemm_range(params):
    nb, m, n = params[0], params[1], params[2]
    return (_round_up(n, TILE), _round_up(m, TILE), nb), (TILE, TILE, 1)


def _matmul_dims(a, b):
    """(batch shape, M, N, K, output shape) for numpy matmul semantics."""
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    m, k, n = a2[-2], a2[-1], b2[-1]
    out = batch + ((m,) if len(a) > 1 else ()) + ((n,) if len(b) > 1 else ())
    return batch, a2, b2, m, n, k, out


@register
class MatMul(Lowering):
    ops = ("MatMul",)
    dtypes = NUMERIC

    def check(self, node):
        if node.in_dtype(0) not in self.dtypes or node.in_dtype(1) != node.in_dtype(0):
            return f"dtype {node.in_dtype(0)}"
        if node.in_rank(0) is None or node.in_rank(1) is None:
            return "unknown rank"
        return None

    def infer(self, node, pc):
        return [_matmul_dims(pc.shape(node.inputs[0]), pc.shape(node.inputs[1]))[-1]]

    def kernel(self, node):
        ra, rb = node.in_rank(0), node.in_rank(1)
        rank = max(max(ra, 2), max(rb, 2)) - 2
        a_name, b_name = node.inputs[0], node.inputs[1]

        def params(pc):
            batch, a2, b2, m, n, k, _ = _matmul_dims(pc.shape(a_name), pc.shape(b_name))
            batch = (1,) * (rank - len(batch)) + batch
            sa = broadcast_strides(a2[:-2], batch) if rank else []
            sb = broadcast_strides(b2[:-2], batch) if rank else []
            return [numel(batch), m, n, k] + list(batch) + sa + sb

        n_params = 4 + 3 * rank
        common = dict(inputs=[a_name, b_name], outputs=[node.outputs[0]], n_params=n_params, params=params)
        if node.in_dtype(0) != "float32":
            body = MAP_MATMUL.replace("{R}", str(rank)).replace("{T}", ctype(node.out_dtype()))

            def map_params(pc):
                values = params(pc)
                return [values[0] * values[1] * values[2]] + values[1:]

            return Kernel(body=body, label="matmul", **{**common, "params": map_params})
        return Kernel(
            c_source=C_SGEMM.replace("{R}", str(rank)),
            cl_source=CL_GEMM.replace("{R}", str(rank)),
            cl_range=_gemm_range,
            anchor=True,
            label="gemm",
            **common,
        )
