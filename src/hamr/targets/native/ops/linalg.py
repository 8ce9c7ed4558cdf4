"""MatMul and Gemm: hamr_gemm on the cpu target (render/gemm_c.py; a constant B is packed once at load),
a register-blocked GEMM on OpenCL (and the GPU dialects).

Both are anchors: their result passes through STORE(gid, acc), where the fuser inserts
an elementwise epilogue (bias, activation, residual add) without another pass in memory.
Other dtypes run a plain map kernel (one output element per work item).
"""

from __future__ import annotations

import functools

from hamr.ir.dtypes import NUMERIC, ctype
from hamr.targets.native.ops.base import (
    Kernel,
    Lowering,
    Source,
    broadcast_shapes,
    broadcast_strides,
    numel,
    strides_of,
)
from hamr.targets.native.ops.elementwise import lit
from hamr.targets.native.ops.packing import pack_b, packed_name, packs_weight, transposed_operand
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render


# p: [nb, M, N, K, batch dims (R), A batch strides (R), B batch strides (R), A row, A column, B row, B column
# strides], strides in elements (a folded Transpose makes them other than contiguous)
def _batch_offsets(batch: str) -> str:
    """oa, ob: the A and B offsets (in elements) of batch item `batch`."""
    return (
        "i64 oa = 0, ob = 0; { i64 r_ = " + batch + "; "
        "for (int a_ = $R - 1; a_ >= 0; a_--) { const i64 d_ = p[4 + a_]; const i64 c_ = r_ % d_; r_ /= d_; "
        "oa += c_ * p[4 + $R + a_]; ob += c_ * p[4 + 2 * $R + a_]; } }"
    )


def store_rows(first_row: str, rows: str, value: str = "out0[at_ + c_]", pragma: str = "") -> str:
    """The epilogue over rows of N columns of out0 (row i at i * N), row by row, so that an input broadcast along
    the leading axes (a bias: its size a multiple of N) is read at the row's offset plus the column, without a
    division per element; `value` may read `i_` (the row) and `c_` (the column)."""
    return (
        "#undef H_SUFFIX\n#define H_SUFFIX(G_, N_) (at_ % (N_) + c_)\n"
        + (pragma + "\n" if pragma else "")
        + f"    for (i64 i_ = {first_row}; i_ < {first_row} + {rows}; i_++) {{\n"
        + "      const i64 at_ = i_ * N;\n"
        + f"      for (i64 c_ = 0; c_ < N; c_++) STORE(at_ + c_, {value});\n"
        + "    }\n#undef H_SUFFIX\n#define H_SUFFIX(G_, N_) ((G_) % (N_))\n"
    )


# (batch, block of rows) items across the OpenMP threads; each item's epilogue runs right after its GEMM
# (hamr_gemm, render/gemm_c.py; in2: a constant B packed at load), while the block is still in cache, so there is
# one parallel region.
C_SGEMM = (
    """static void $name(const i64 *p, const f32 *in0, const f32 *in1, ${PACKED_ARG}f32 *out0$extra) {
  const i64 nb = p[0], M = p[1], N = p[2], K = p[3];
  if (M * N == 0) return;
  const int nt = nb * M * N * K > 8 * PARALLEL_THRESHOLD ? omp_get_max_threads() : 1;
  const i64 rows = nb >= nt || nt == 1 ? M : H_MAX((M + nt - 1) / nt, 1);
  const i64 chunks = (M + rows - 1) / rows, items = nb * chunks;
  #pragma omp parallel for schedule(static) if(items > 1)
  for (i64 it = 0; it < items; it++) {
    const i64 b = it / chunks, r0 = (it % chunks) * rows, r = H_MIN(rows, M - r0);
    """
    + _batch_offsets("it / chunks")
    + """
    const i64 rsa = p[4 + 3 * $R], csa = p[5 + 3 * $R], rsb = p[6 + 3 * $R], csb = p[7 + 3 * $R];
    f32 *C = out0 + b * M * N + r0 * N;
    hamr_gemm(r, N, K, 1.0f, in0 + oa + r0 * rsa, rsa, csa, in1 + ob, rsb, csb, $PACKED, C, N);
"""
    + store_rows("b * M + r0", "r")
    + """  }
}
"""
)

# float32 GEMM in OpenCL C, register blocked: each work item computes RI rows by W columns of C in registers,
# reading W consecutive elements of a row of B (one coalesced run per item on a GPU, vector code on a CPU) and
# RI elements of A per step of K. A whole tile skips the bounds checks; an edge tile clamps its reads and stores
# only what is inside. No local memory: its barriers cost more than they save on CPU OpenCL (PoCL), and neighbouring
# items share A's rows and B's columns through the cache.
GEMM_RI, GEMM_W = 8, 16
CL_GEMM_RB = """#define HA(R_, K_) ($A_AT)
#define HB(K_, C_) ($B_AT)
__kernel void $name(__global const long *P, const long poff, __global const f32 *in0, __global const f32 *in1,
            ${C_ARG}__global f32 *out0$extra) {
  __global const long *p = P + poff;
  const long M = p[1], N = p[2], K = p[3];
  const long c0 = get_global_id(0) * $W, r0 = get_global_id(1) * $RI;
  if (c0 >= N || r0 >= M) return;
  $BATCH
  f32 s[$RI][$W];
  for (int i = 0; i < $RI; i++) for (int j = 0; j < $W; j++) s[i][j] = 0.0f;
  if (c0 + $W <= N && r0 + $RI <= M) {
    for (long k = 0; k < K; k++) {
      f32 bv[$W];
      for (int j = 0; j < $W; j++) bv[j] = HB(k, c0 + j);
      for (int i = 0; i < $RI; i++) {
        const f32 av = HA(r0 + i, k);
        for (int j = 0; j < $W; j++) s[i][j] += av * bv[j];
      }
    }
  } else {
    const long rows = H_MIN((long)$RI, M - r0);
    for (long k = 0; k < K; k++) {
      f32 bv[$W];
      for (int j = 0; j < $W; j++) bv[j] = HB(k, H_MIN(c0 + j, N - 1));
      for (int i = 0; i < rows; i++) {
        const f32 av = HA(r0 + i, k);
        for (int j = 0; j < $W; j++) s[i][j] += av * bv[j];
      }
    }
  }
  for (int i = 0; i < $RI; i++) {
    const long row = r0 + i;
    if (row >= M) break;
    for (int j = 0; j < $W; j++) {
      const long col = c0 + j;
      if (col < N) STORE($OUT_AT, $VALUE);
    }
  }
}
#undef HA
#undef HB
"""

CL_GEMM = render(
    CL_GEMM_RB,
    A_AT="A[(R_) * K + (K_)]",
    B_AT="B[(K_) * N + (C_)]",
    BATCH="const long b = get_global_id(2);\n  "
    + _batch_offsets("b")
    + "\n  __global const f32 *A = in0 + oa, *B = in1 + ob;",
    OUT_AT="(b * M + row) * N + col",
    VALUE="s[i][j]",
    C_ARG="",
    RI=GEMM_RI,
    W=GEMM_W,
    name="$name",  # left for the renderer
    extra="$extra",
)

MATMUL_SOURCES = {"c": C_SGEMM, "opencl": CL_GEMM}  # float32 MatMul, per dialect

MAP_MATMUL = (
    "const i64 M = p[1], N = p[2], K = p[3]; const i64 b = gid / (M * N), r = (gid / N) % M, c = gid % N; "
    + _batch_offsets("b")
    + " $T acc = 0; for (i64 k = 0; k < K; k++) acc += in0[oa + r * K + k] * in1[ob + k * N + c];"
    " out0[gid] = acc;"
)


def _read_strides(pc, fold, shape2) -> list[int]:
    """Element strides the GEMM reads an operand with: contiguous, or a folded Transpose's permuted strides."""
    if fold is None:
        return strides_of(shape2)
    source, perm = fold
    contiguous = strides_of(pc.shape(source))
    return [contiguous[axis] for axis in perm]


def _batch_strides(shape2, strides2, batch) -> list[int]:
    """Strides of the batch axes of an operand broadcast to `batch` (0 along broadcast axes)."""
    lead = len(batch) - (len(shape2) - 2)
    out = []
    for d, size in enumerate(batch):
        j = d - lead
        out.append(0 if j < 0 or (shape2[j] == 1 and size != 1) else strides2[j])
    return out


def _gemm_range(params):
    """One work item per tile of GEMM_RI rows by GEMM_W columns of each batch item's C."""
    nb, m, n = params[0], params[1], params[2]
    return (-(-n // GEMM_W), -(-m // GEMM_RI), nb), None


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

    def dialects(self, node):
        return MATMUL_SOURCES.keys() if node.in_dtype(0) == "float32" else None

    def infer(self, node, pc):
        return [_matmul_dims(pc.shape(node.inputs[0]), pc.shape(node.inputs[1]))[-1]]

    def kernel(self, node):
        ra, rb = node.in_rank(0), node.in_rank(1)
        rank = max(max(ra, 2), max(rb, 2)) - 2
        a_name, b_name = node.inputs[0], node.inputs[1]
        folds = (transposed_operand(a_name), transposed_operand(b_name))

        def params(pc):
            batch, a2, b2, m, n, k, _ = _matmul_dims(pc.shape(a_name), pc.shape(b_name))
            batch = (1,) * (rank - len(batch)) + batch
            va, vb = _read_strides(pc, folds[0], a2), _read_strides(pc, folds[1], b2)
            sa, sb = _batch_strides(a2, va, batch), _batch_strides(b2, vb, batch)
            return [numel(batch), m, n, k] + list(batch) + sa + sb + va[-2:] + vb[-2:]

        n_params = 8 + 3 * rank
        common = dict(inputs=[a_name, b_name], outputs=[node.outputs[0]], n_params=n_params, params=params)
        if node.in_dtype(0) != "float32":
            body = render(MAP_MATMUL, R=rank, T=ctype(node.out_dtype()))

            def map_params(pc):
                values = params(pc)
                return [values[0] * values[1] * values[2]] + values[1:]

            return Kernel(body=body, label="matmul", **{**common, "params": map_params})
        derived = _packed_b(node, b_name, rb, trans=False)
        if derived:
            common["inputs"] = [a_name, b_name, *derived]
        values = {"R": rank}
        c_values = {
            **values,
            "PACKED_ARG": "const f32 *in2, " if derived else "",
            "PACKED": "in2 + (K ? ob / (K * N) : 0) * hamr_packed_size(K, N)" if derived else "0",
        }
        return Kernel(
            sources={
                "c": Source(MATMUL_SOURCES["c"], c_values),
                "opencl": Source(MATMUL_SOURCES["opencl"], values, _gemm_range),
            },
            anchor=True,
            label="gemm",
            derived=derived,
            **common,
        )


# ---- Gemm: Y = alpha * A' B' + beta * C, p: [M * N, M, N, K, C row stride, C column stride] ----

# hamr_gemm (render/gemm_c.py) splits the product across the OpenMP threads; the epilogue runs after it, by rows.
C_GEMM = """static void $name(const i64 *p, const f32 *in0, const f32 *in1, ${C_ARG}${PACKED_ARG}f32 *out0$extra) {
  const i64 total = p[0], M = p[1], N = p[2], K = p[3];
  if (total == 0) return;
  if (K == 0) for (i64 i = 0; i < total; i++) out0[i] = 0;
  else hamr_gemm(M, N, K, $ALPHA, in0, $RSA, $CSA, in1, $RSB, $CSB, $PACKED, out0, N);
$EPILOGUE}
"""

CL_GEMM2 = CL_GEMM_RB  # Gemm: the same kernel with its transposes, alpha and C (cl_values in Gemm.kernel)

GEMM_SOURCES = {"c": C_GEMM, "opencl": CL_GEMM2}  # float32 Gemm, per dialect

MAP_GEMM = (
    "const i64 M = p[1], N = p[2], K = p[3], r = gid / N, c = gid % N; $T acc = 0;"
    " for (i64 k = 0; k < K; k++) acc += in0[$A_AT] * in1[$B_AT];"
    " out0[gid] = $ALPHA * acc$C_ADD;"
)


@register
class Gemm(Lowering):
    ops = ("Gemm",)
    dtypes = NUMERIC

    def check(self, node):
        dtype = node.in_dtype(0)
        if dtype not in self.dtypes or node.in_dtype(1) != dtype:
            return f"dtype {dtype}"
        if node.has_input(2) and node.in_dtype(2) != dtype:
            return f"dtype {node.in_dtype(2)}"
        if node.in_rank(0) != 2 or node.in_rank(1) != 2:
            return "rank"
        if node.has_input(2) and (node.in_rank(2) is None or node.in_rank(2) > 2):
            return "C rank"
        return None

    @staticmethod
    def dims(node, pc):
        a, b = pc.shape(node.inputs[0]), pc.shape(node.inputs[1])
        m, k = (a[1], a[0]) if node.attr("transA", 0) else a
        n = b[0] if node.attr("transB", 0) else b[1]
        return m, n, k

    def dialects(self, node):
        return GEMM_SOURCES.keys() if node.in_dtype(0) == "float32" else None

    def infer(self, node, pc):
        m, n, _ = self.dims(node, pc)
        return [(m, n)]

    def kernel(self, node):
        t = ctype(node.in_dtype(0))
        ta, tb = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
        alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
        has_c = node.has_input(2) and beta != 0
        c_name = node.inputs[2] if has_c else None

        def params(pc):
            m, n, k = self.dims(node, pc)
            strides = broadcast_strides(pc.shape(c_name), (m, n)) if has_c else [0, 0]
            return [m * n, m, n, k] + strides

        inputs = node.inputs[:3] if has_c else node.inputs[:2]
        common = dict(inputs=inputs, outputs=[node.outputs[0]], n_params=6, params=params)
        alpha_lit = lit(alpha, t)

        def c_add(at: str) -> str:
            return f" + {lit(beta, t)} * in2[{at}]" if has_c else ""

        if t != "f32":
            body = render(
                MAP_GEMM,
                T=t,
                ALPHA=alpha_lit,
                C_ADD=c_add("r * p[4] + c * p[5]"),
                A_AT="k * M + r" if ta else "r * K + k",
                B_AT="c * K + k" if tb else "k * N + c",
            )
            return Kernel(body=body, label="gemm", grain=64, **common)
        value = f"out0[at_ + c_] + {lit(beta, t)} * in2[i_ * p[4] + c_ * p[5]]" if has_c else "out0[at_ + c_]"
        pragma = "  #pragma omp parallel for schedule(static) if(total > PARALLEL_THRESHOLD)"
        epilogue = store_rows("0", "M", value, pragma)
        derived = _packed_b(node, node.inputs[1], 2, trans=tb)
        if derived:
            common["inputs"] = [*inputs, *derived]
        packed = f"in{len(inputs)}"
        c_values = dict(
            PACKED_ARG=f"const f32 *{packed}, " if derived else "",
            PACKED=packed if derived else "0",
            EPILOGUE=epilogue,
            C_ARG="const f32 *in2, " if has_c else "",
            RSA="1" if ta else "K",
            CSA="M" if ta else "1",
            RSB="1" if tb else "N",
            CSB="K" if tb else "1",
            ALPHA=alpha_lit,
        )
        cl_values = dict(
            C_ARG="__global const f32 *in2, " if has_c else "",
            A_AT="in0[(K_) * M + (R_)]" if ta else "in0[(R_) * K + (K_)]",
            B_AT="in1[(C_) * K + (K_)]" if tb else "in1[(K_) * N + (C_)]",
            BATCH="",
            OUT_AT="row * N + col",
            VALUE=f"{alpha_lit} * s[i][j]" + c_add("row * p[4] + col * p[5]"),
            RI=GEMM_RI,
            W=GEMM_W,
        )
        sources = {
            "c": Source(GEMM_SOURCES["c"], c_values),
            "opencl": Source(GEMM_SOURCES["opencl"], cl_values, _gemm2_range),
        }
        return Kernel(sources=sources, anchor=True, label="gemm", derived=derived, **common)


def _packed_b(node, b_name: str, b_rank: int, trans: bool) -> dict:
    """A constant float32 B of rank >= 2, packed once at load for a dialect whose GEMM reads panels."""
    if b_rank is None or b_rank < 2 or not packs_weight(b_name):
        return {}
    return {packed_name(b_name, trans): (b_name, functools.partial(pack_b, trans=trans))}


def _gemm2_range(params):
    m, n = params[1], params[2]
    return (-(-n // GEMM_W), -(-m // GEMM_RI)), None
