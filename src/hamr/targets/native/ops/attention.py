"""Attention (opset 23+): scores, additive bias, softmax and the weighted values in one kernel.

Each score is (q * sqrt(scale)) . (k * sqrt(scale)), softcapped, plus the additive bias of
(query i, key j): the mask (shorter masks pad with -inf), the causal and window frontiers
(offset by the past length, or by nonpad_kv_seqlen - Sq), the padding. A row whose bias is
-inf everywhere gives 0. GQA maps query head h to key head h / (q heads / kv heads). Keys
below the past length come from past_key/past_value; present_key/present_value are written
by the work of each key head's first query head.

- float32 on cpu (`C_ATTENTION`): one item per (batch, query head); its scores are one
  sgemm through `hamr_sgemm` (two with a past), the softmax runs in place, and Y is one
  more sgemm (two with a past).
- elsewhere (OpenCL, float64): one work item per query row with an online softmax: the
  running maximum rescales the partial sum and the output row, kept in Y itself.
"""

from __future__ import annotations

from hamr.ir.dtypes import FLOATS, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, Source, broadcast_strides, numel
from hamr.targets.native.ops.elementwise import lit
from hamr.targets.native.ops.reduce import BITCASTS, exp_nonpositive_f32, lane_reduce
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render

Q, K, V, MASK, PAST_K, PAST_V, NONPAD = range(7)
Y, PRESENT_K, PRESENT_V, QK = range(4)
QK_AFTER_BIAS, QK_AFTER_SOFTMAX = 2, 3
CAUSAL_BLOCK = 64  # query rows per score sgemm in causal attention

# p: [rows, Hq, Sq, D, Dv, PL, T, G, Hkv, q strides (b, h, i), k strides (b, h, j), v strides (b, h, j),
#     y strides (b, h, i), mask strides (b, h, i, j), mask length]
N_PARAMS = 26

DIMS = "const i64 Hq = p[1], Sq = p[2], D = p[3], Dv = p[4], PL = p[5], T = p[6], G = p[7], Hkv = p[8]; "
ROW = DIMS + (
    "const i64 i = gid % Sq, h = (gid / Sq) % Hq, b = gid / (Sq * Hq), kh = h / G; "
    "const i64 qo_ = b * p[9] + h * p[10] + i * p[11], yo_ = b * p[18] + h * p[19] + i * p[20]; "
    "const $T s_ = $SCALE; const i64 off_ = $OFFSET; "
)

# bias_ for key j: the mask, then the causal and window frontiers and the padding
MASK_BIAS = {
    "bool": "if (j >= p[25] || !$M[b * p[21] + h * p[22] + i * p[23] + j * p[24]]) bias_ = -INFINITY; ",
    "float": "if (j >= p[25]) bias_ = -INFINITY; else bias_ += $M[b * p[21] + h * p[22] + i * p[23] + j * p[24]]; ",
}

# x_: the softcapped score of key j (qo_: the query row)
SCORE = (
    "$T x_ = 0; if (j < PL) { const i64 ko_ = ((b * Hkv + kh) * PL + j) * D; "
    "for (i64 d = 0; d < D; d++) x_ += ($PK[ko_ + d] * s_) * (in0[qo_ + d] * s_); } "
    "else { const i64 ko_ = b * p[12] + kh * p[13] + (j - PL) * p[14]; "
    "for (i64 d = 0; d < D; d++) x_ += (in1[ko_ + d] * s_) * (in0[qo_ + d] * s_); } $SOFTCAP"
)

# the offset of value row j and a loop over its elements
V_ROW = (
    "{ const int past_ = j < PL; const i64 vo_ = past_ ? ((b * Hkv + kh) * PL + j) * Dv "
    ": b * p[15] + kh * p[16] + (j - PL) * p[17]; "
    "for (i64 d = 0; d < Dv; d++) { const $T v_ = past_ ? $PV[vo_ + d] : in2[vo_ + d]; $STMT } } "
)

ONLINE = (
    "$T m_ = -INFINITY, l_ = 0; int any_ = 0; for (i64 d = 0; d < Dv; d++) out0[yo_ + d] = 0; "
    "for (i64 j = 0; j < T; j++) { $BIAS ${EAGER_SCORE}"
    "if (bias_ == -INFINITY) continue; any_ = 1; $LAZY_SCORE x_ += bias_; if (x_ == -INFINITY) continue; "
    "if (x_ > m_) { const $T c_ = exp(m_ - x_); l_ *= c_; for (i64 d = 0; d < Dv; d++) out0[yo_ + d] *= c_; m_ = x_; } "
    "const $T e_ = exp(x_ - m_); l_ += e_; $ACCUMULATE } "
    "const $T r_ = any_ ? (l_ == 0 ? ($T)0 : ($T)1 / l_) : ($T)0; for (i64 d = 0; d < Dv; d++) out0[yo_ + d] *= r_; "
)

SOFTMAX_OUT = (
    "for (i64 j = 0; j < T; j++) { $BIAS $T pr_ = 0; "
    "if (any_ && bias_ != -INFINITY) { $SCORE x_ += bias_; pr_ = x_ == -INFINITY ? ($T)0 : exp(x_ - m_) * r_; } "
    "$QK[gid * T + j] = pr_; } "
)

# each key head's first query head copies rows i, i + Sq, ... of the present key and value
PRESENT = (
    "if (h % G == 0) for (i64 j = i; j < T; j += Sq) { "
    "const i64 po_ = ((b * Hkv + kh) * T + j) * D; const int past_ = j < PL; "
    "const i64 ko_ = past_ ? ((b * Hkv + kh) * PL + j) * D : b * p[12] + kh * p[13] + (j - PL) * p[14]; "
    "for (i64 d = 0; d < D; d++) $PRK[po_ + d] = past_ ? $PK[ko_ + d] : in1[ko_ + d]; "
    "const i64 pvo_ = ((b * Hkv + kh) * T + j) * Dv; "
    "const i64 vo_ = past_ ? ((b * Hkv + kh) * PL + j) * Dv : b * p[15] + kh * p[16] + (j - PL) * p[17]; "
    "for (i64 d = 0; d < Dv; d++) $PRV[pvo_ + d] = past_ ? $PV[vo_ + d] : in2[vo_ + d]; } "
)


# float32 on cpu: one item per (batch, query head); the scores of a block of its rows are one sgemm (two with a
# past), the softmax runs in place over them, and Y is one more sgemm (two with a past). Causal attention
# without raw scores to output takes blocks of 64 rows and leaves out the keys after the block's last frontier.
C_ATTENTION = (
    "#include <stdlib.h>\n"
    + BITCASTS
    + """static void $name(const i64 *p$extra) {
  """
    + DIMS
    + """
  const i64 items = Sq ? p[0] / Sq : 0;
  #pragma omp parallel for schedule(dynamic) if(items > 1 && (double)p[0] * T * (D + Dv) > PARALLEL_THRESHOLD)
  for (i64 it = 0; it < items; it++) {
    const i64 b = it / Hq, h = it % Hq, kh = h / G;
    const f32 s_ = $SCALE; const i64 off_ = $OFFSET;
    f32 *x_ = (f32 *)malloc(sizeof(f32) * (Sq * T + 1));
    const f32 *q_ = in0 + b * p[9] + h * p[10];
    f32 *y_ = out0 + b * p[18] + h * p[19];
    if (!x_) { for (i64 i = 0; i < Sq; i++) for (i64 d = 0; d < Dv; d++) y_[i * p[20] + d] = NAN; continue; }
    for (i64 i0 = 0; i0 < Sq; i0 += $BLOCK) {
      const i64 rb = H_MIN($BLOCK, Sq - i0), tj = $KEYS, tp = H_MIN(PL, tj);
      const f32 *qb_ = q_ + i0 * p[11]; f32 *xb_ = x_ + i0 * T, *yb_ = y_ + i0 * p[20];
      if (tp > 0) hamr_sgemm(101, 111, 112, (int)rb, (int)tp, (int)D, s_ * s_, qb_, (int)p[11],
                             $PK + (b * Hkv + kh) * PL * D, (int)D, 0.0f, xb_, (int)T);
      if (tj > PL) hamr_sgemm(101, 111, 112, (int)rb, (int)(tj - PL), (int)D, s_ * s_, qb_, (int)p[11],
                              in1 + b * p[12] + kh * p[13], (int)p[14], 0.0f, xb_ + PL, (int)T);
      for (i64 i = i0; i < i0 + rb; i++) {
        const i64 gid = it * Sq + i; f32 *xr_ = x_ + i * T;
        for (i64 j = H_MAX(tj, (i64)0); j < T; j++) xr_[j] = 0;
        $ROW
      }
      if (tp > 0) hamr_sgemm(101, 111, 111, (int)rb, (int)Dv, (int)tp, 1.0f, xb_, (int)T,
                             $PV + (b * Hkv + kh) * PL * Dv, (int)Dv, 0.0f, yb_, (int)p[20]);
      if (tj > PL) hamr_sgemm(101, 111, 111, (int)rb, (int)Dv, (int)(tj - PL), 1.0f, xb_ + PL, (int)T,
                              in2 + b * p[15] + kh * p[16], (int)p[17], tp > 0 ? 1.0f : 0.0f, yb_, (int)p[20]);
      if (tj <= 0) for (i64 i = 0; i < rb; i++) for (i64 d = 0; d < Dv; d++) yb_[i * p[20] + d] = 0;
    }
    for (i64 i = 0; i < Sq; i++) { $PRESENT }
    free(x_);
  }
}
"""
)

# one row of scores xr_ (query i of item `it`) to probabilities; $QK_EAGER writes x (or x + bias_) first
C_SOFTMAX_ROW = (
    "f32 m_ = -INFINITY; int any_ = 0; "
    "for (i64 j = 0; j < T; j++) { f32 x = xr_[j]; $SOFTCAP $BIAS ${QK_EAGER}"
    "if (bias_ == -INFINITY) x = -INFINITY; else { any_ = 1; x += bias_; } xr_[j] = x; m_ = H_MAX(m_, x); } "
    "if (!any_ || m_ == -INFINITY) { for (i64 j = 0; j < T; j++) xr_[j] = 0; } "
    "else { for (i64 j = 0; j < T; j++) { $EXP } ${SUM} "
    "const f32 r_ = sum_ == 0 ? 0.0f : 1.0f / sum_; for (i64 j = 0; j < T; j++) xr_[j] *= r_; } "
    "$QK_SOFTMAX"
)

# OpenCL: the row kernel as a custom source, one work item per query row
CL_ROWS = """__kernel void $name(__global const long *P, const long poff$extra) {
  __global const long *p = P + poff;
  const i64 gid = get_global_id(0);
  if (gid >= p[0]) return;
  $BODY
}
"""

ATTENTION_SOURCES = {"c": C_ATTENTION, "opencl": CL_ROWS}  # float32 Attention, per dialect


def _heads(node, i: int, shape) -> tuple[int, int, int, tuple[int, int, int]]:
    """(heads, sequence length, head size, element strides of (batch, head, position)) of Q, K or V."""
    if len(shape) == 4:
        _, heads, seq, size = shape
        return heads, seq, size, (heads * seq * size, seq * size, size)
    _, seq, hidden = shape
    heads = int(node.attr("q_num_heads" if i == Q else "kv_num_heads"))
    size = hidden // heads
    return heads, seq, size, (seq * hidden, size, hidden)


def _check_dims(node, pc, q, k, v, hq, hkv, d, dk, dv, total) -> None:
    """Shapes the kernel would read out of bounds with: ValueError (a KernelError when planning)."""
    batch = q[0]
    if k[0] != batch or v[0] != batch or k[-2] != v[-2] or (len(q) == 4 and k[1] != v[1]):
        raise ValueError(f"query, key and value shapes {tuple(q)}, {tuple(k)}, {tuple(v)} do not match")
    if len(q) == 3 and (q[2] % hq or k[2] % hkv or v[2] % hkv):
        raise ValueError(f"hidden sizes {q[2]}, {k[2]}, {v[2]} are not multiples of the head counts {hq}, {hkv}")
    if hkv == 0 or hq % hkv or d != dk:
        raise ValueError(f"{hq} query heads of size {d} do not match {hkv} key heads of size {dk}")
    for i, size in ((PAST_K, d), (PAST_V, dv)):
        if node.has_input(i) and tuple(pc.shape(node.inputs[i])) != (batch, hkv, total - k[-2], size):
            raise ValueError(f"past shape {tuple(pc.shape(node.inputs[i]))} does not match the keys")
    if node.has_input(MASK):
        mask = tuple(pc.shape(node.inputs[MASK]))
        sq = q[-2] if len(q) == 4 else q[1]
        if mask[-1] > total:
            raise ValueError(f"mask shape {mask} is longer than the {total} keys")
        if any(m not in (1, t) for m, t in zip(mask[::-1][1:], (sq, hq, batch))):
            raise ValueError(f"mask shape {mask} does not broadcast to {(batch, hq, sq, total)}")
    if node.has_input(NONPAD) and tuple(pc.shape(node.inputs[NONPAD])) != (batch,):
        raise ValueError(f"nonpad_kv_seqlen shape {tuple(pc.shape(node.inputs[NONPAD]))} is not ({batch},)")


def _has_output(node, i: int) -> bool:
    return len(node.outputs) > i and bool(node.outputs[i])


class _Args:
    """The node's buffers as kernel arguments (in0..., out0...) and its attributes as code."""

    def __init__(self, node, inputs: list[str], outputs: list[str]):
        t = ctype(node.in_dtype(Q))

        def arg(i, kind="in"):
            names, own = (inputs, node.inputs) if kind == "in" else (outputs, node.outputs)
            return f"{kind}{names.index(own[i])}"

        self.mask = arg(MASK) if node.has_input(MASK) else None
        self.past_k = arg(PAST_K) if node.has_input(PAST_K) else "in1"
        self.past_v = arg(PAST_V) if node.has_input(PAST_V) else "in2"
        self.qk = arg(QK, "out") if _has_output(node, QK) else None
        self.present = (arg(PRESENT_K, "out"), arg(PRESENT_V, "out")) if _has_output(node, PRESENT_K) else None
        self.mode = int(node.attr("qk_matmul_output_mode", 0))
        self.causal = bool(node.attr("is_causal", 0))
        self.t, self.cap = t, float(node.attr("softcap", 0.0) or 0.0)
        scale = node.attr("scale")
        self.scale = f"sqrt({lit(float(scale), t)})" if scale is not None else f"sqrt(({t})1 / sqrt(({t})D))"
        nonpad = arg(NONPAD) if node.has_input(NONPAD) else None
        self.offset = "PL" if node.has_input(PAST_K) else (f"{nonpad}[b] - Sq" if nonpad else "0")
        self.bias = _bias(node, t, self.mask, nonpad)

    def softcap(self, x: str) -> str:
        cap = lit(self.cap, self.t)
        return f"{x} = {cap} * tanh({x} / {cap}); " if self.cap > 0 else ""

    def present_copy(self) -> str:
        if not self.present:
            return ""
        return render(PRESENT, PK=self.past_k, PV=self.past_v, PRK=self.present[0], PRV=self.present[1])


def _bias(node, t: str, mask: str | None, nonpad: str | None) -> str:
    """Statements declaring bias_, the additive bias of key j for query i."""
    bias = f"{t} bias_ = 0; "
    if mask:
        bias += render(MASK_BIAS["bool" if node.in_dtype(MASK) == "bool" else "float"], M=mask)
    if node.attr("is_causal", 0):
        bias += "if (j > i + off_) bias_ = -INFINITY; "
    left, right = int(node.attr("left_window_size", -1)), int(node.attr("right_window_size", -1))
    if left >= 0:
        bias += f"if (i + off_ - j > {left}) bias_ = -INFINITY; "
    if right >= 0:
        bias += f"if (j - i - off_ > {right}) bias_ = -INFINITY; "
    if nonpad:
        bias += f"if (j >= {nonpad}[b]) bias_ = -INFINITY; "
    return bias


def _row_body(t: str, a: _Args) -> str:
    """The map kernel: one query row per work item, online softmax."""
    score = render(SCORE, T=t, PK=a.past_k, SOFTCAP=a.softcap("x_"))
    eager = ""
    if a.qk and a.mode != QK_AFTER_SOFTMAX:
        eager = f"{score} {a.qk}[gid * T + j] = {'x_ + bias_' if a.mode == QK_AFTER_BIAS else 'x_'}; "
    accumulate = render(V_ROW, T=t, PV=a.past_v, STMT="out0[yo_ + d] += e_ * v_;")
    body = render(ROW, T=t, SCALE=a.scale, OFFSET=a.offset) + render(
        ONLINE, T=t, BIAS=a.bias, EAGER_SCORE=eager, LAZY_SCORE="" if eager else score, ACCUMULATE=accumulate
    )
    if a.qk and a.mode == QK_AFTER_SOFTMAX:
        body += render(SOFTMAX_OUT, T=t, BIAS=a.bias, SCORE=score, QK=a.qk)
    return body + a.present_copy()


def _c_values(a: _Args) -> dict:
    """The values of `C_ATTENTION`: the softmax of one row of scores, the present copy."""
    eager = softmax = ""
    if a.qk and a.mode == QK_AFTER_SOFTMAX:
        softmax = f"for (i64 j = 0; j < T; j++) {a.qk}[gid * T + j] = xr_[j]; "
    elif a.qk:
        eager = f"{a.qk}[gid * T + j] = {'x + bias_' if a.mode == QK_AFTER_BIAS else 'x'}; "
    row = render(
        C_SOFTMAX_ROW,
        SOFTCAP=a.softcap("x"),
        BIAS=a.bias,
        QK_EAGER=eager,
        EXP=exp_nonpositive_f32("xr_[j]", "xr_[j] - m_"),
        SUM=lane_reduce(
            "sum_", "0.0f", "f32", lambda acc, x: f"{acc} + {x}", lambda x, y: f"{x} + {y}", "T", lambda j: f"xr_[{j}]"
        ),
        QK_SOFTMAX=softmax,
    )
    skip = a.causal and not (a.qk and a.mode != QK_AFTER_SOFTMAX)  # raw scores of masked keys are outputs
    return dict(
        SCALE=a.scale,
        OFFSET=a.offset,
        PK=a.past_k,
        PV=a.past_v,
        ROW=row,
        PRESENT=a.present_copy(),
        BLOCK=CAUSAL_BLOCK if skip else "Sq",
        KEYS="H_MIN(T, i0 + rb + off_)" if skip else "T",
    )


@register
class Attention(Lowering):
    ops = ("Attention",)
    dtypes = FLOATS

    def check(self, node):
        dtype = node.in_dtype(Q)
        if dtype not in self.dtypes:
            return f"dtype {dtype}"
        for i in (K, V, PAST_K, PAST_V):
            if node.has_input(i) and node.in_dtype(i) != dtype:
                return f"dtype {node.in_dtype(i)}"
        if node.has_input(MASK) and node.in_dtype(MASK) not in (dtype, "bool"):
            return f"mask dtype {node.in_dtype(MASK)}"
        if node.has_input(NONPAD) and (node.in_dtype(NONPAD) != "int64" or node.has_input(PAST_K)):
            return "nonpad_kv_seqlen not int64, or with a past"
        if node.has_input(PAST_K) != node.has_input(PAST_V):
            return "past_key without past_value"
        rank = node.in_rank(Q)
        if rank not in (3, 4) or node.in_rank(K) != rank or node.in_rank(V) != rank:
            return "rank"
        if rank == 3 and (node.attr("q_num_heads") is None or node.attr("kv_num_heads") is None):
            return "3-D inputs without head counts"
        if node.has_input(MASK) and (node.in_rank(MASK) is None or not 1 <= node.in_rank(MASK) <= 4):
            return "mask rank"
        if _has_output(node, PRESENT_K) != _has_output(node, PRESENT_V):
            return "present_key without present_value"
        return None

    def dims(self, node, pc) -> dict[str, int]:
        q, k, v = (pc.shape(node.inputs[i]) for i in (Q, K, V))
        hq, sq, d, qs = _heads(node, Q, q)
        hkv, skv, dk, ks = _heads(node, K, k)
        _, _, dv, vs = _heads(node, V, v)
        past = pc.shape(node.inputs[PAST_K])[2] if node.has_input(PAST_K) else 0
        _check_dims(node, pc, q, k, v, hq, hkv, d, dk, dv, past + skv)
        return dict(b=int(q[0]), hq=hq, sq=sq, d=d, dv=dv, hkv=hkv, t=past + skv, past=past, qs=qs, ks=ks, vs=vs)

    def infer(self, node, pc):
        m = self.dims(node, pc)
        b, hq, sq, dv = m["b"], m["hq"], m["sq"], m["dv"]
        y = (b, sq, hq * dv) if node.in_rank(Q) == 3 else (b, hq, sq, dv)
        shapes = [y, (b, m["hkv"], m["t"], m["d"]), (b, m["hkv"], m["t"], dv), (b, hq, sq, m["t"])]
        return shapes[: len(node.outputs)]

    def kernel(self, node):
        t = ctype(node.in_dtype(Q))
        inputs = [name for name in node.inputs if name]
        outputs = [name for name in node.outputs if name]
        a = _Args(node, inputs, outputs)
        body = _row_body(t, a)
        names = node.inputs
        rank4 = node.in_rank(Q) == 4

        def params(pc):
            m = self.dims(node, pc)
            b, hq, sq, dv = m["b"], m["hq"], m["sq"], m["dv"]
            ys = (hq * sq * dv, sq * dv, dv) if rank4 else (sq * hq * dv, dv, hq * dv)
            mask_part = [0, 0, 0, 0, 0]
            if a.mask:
                shape = tuple(pc.shape(names[MASK]))
                mask_part = broadcast_strides(shape, (b, hq, sq, shape[-1])) + [shape[-1]]
            head = [b * hq * sq, hq, sq, m["d"], dv, m["past"], m["t"], hq // m["hkv"], m["hkv"]]
            return head + list(m["qs"]) + list(m["ks"]) + list(m["vs"]) + list(ys) + mask_part

        common = dict(inputs=inputs, outputs=outputs, n_params=N_PARAMS, params=params, label="attention")
        if t != "f32":
            grain = 4 * numel([d if isinstance(d, int) else 16 for d in (node.in_shape(K) or ())[-2:]])
            return Kernel(body=body, grain=grain, **common)
        sources = {
            "c": Source(ATTENTION_SOURCES["c"], _c_values(a)),
            "opencl": Source(ATTENTION_SOURCES["opencl"], dict(BODY=body), lambda p: ((int(p[0]),), None)),
        }
        return Kernel(sources=sources, own_args=(0, 0), **common)

    def dialects(self, node):
        return ATTENTION_SOURCES.keys() if node.in_dtype(Q) == "float32" else None
