"""LSTM, GRU and RNN (float32, C dialect): one kernel per node.

The input projection of every timestep and both directions is one GEMM (``X W^T``, hamr_gemm; a
constant W is packed in panels at load), with the biases that add outside the gates folded into it.
Each step then runs the recurrent product ``H R^T`` over R transposed (a constant R is transposed at
load) with the accumulators in registers, and the gates in one vectorised loop per batch row (f32
sigmoid and tanh through vecmath's H_SIGMOID / H_TANH). The two directions of a bidirectional node
run on two threads when the node is large enough. Every attribute is honoured: direction (forward,
reverse, bidirectional), activations with their alpha and beta, clip, input_forget, layout,
sequence_lens, initial_h / initial_c, peepholes, and GRU's linear_before_reset. Omitted outputs are
not written.
"""

from __future__ import annotations

import numpy as np

from hamr.targets.native.ops import recurrent_cl
from hamr.targets.native.ops.base import Kernel, Lowering, Source
from hamr.targets.native.ops.elementwise import lit
from hamr.targets.native.ops.packing import pack_b, packs_weight
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render

# name -> (expression of x, alpha and beta defaults); alpha and beta are consumed in order by the
# activations that take them, as onnxruntime reads activation_alpha / activation_beta.
ACTIVATIONS = {
    "relu": ("H_MAX(x, 0.0f)", ()),
    "tanh": ("H_TANH(x)", ()),
    "sigmoid": ("H_SIGMOID(x)", ()),
    "affine": ("$A * x + $B", (1.0, 0.0)),
    "leakyrelu": ("(x >= 0.0f ? x : $A * x)", (0.01,)),
    "thresholdedrelu": ("(x > $A ? x : 0.0f)", (1.0,)),
    "scaledtanh": ("$A * H_TANH($B * x)", (1.0, 1.0)),
    "hardsigmoid": ("H_MAX(0.0f, H_MIN(1.0f, $A * x + $B))", (0.2, 0.5)),
    "elu": ("(x >= 0.0f ? x : $A * (H_EXP(x) - 1.0f))", (1.0,)),
    "softsign": ("x / (1.0f + fabs(x))", ()),
    "softplus": ("H_LOG(1.0f + H_EXP(x))", ()),
}

# op -> (gates, activations per direction, their defaults, optional inputs after X, W, R)
SPECS = {
    "LSTM": (4, ["sigmoid", "tanh", "tanh"], ("B", "L", "H0", "C0", "P")),
    "GRU": (3, ["sigmoid", "tanh"], ("B", "L", "H0")),
    "RNN": (1, ["tanh"], ("B", "L", "H0")),
}

# C[b, 0:N] = A[b, 0:K] Bt[0:K, 0:N] for rows b < M (row strides lda, ldb, ldc), on the calling thread:
# 64 columns at a time in four 16-float vector registers (gcc vector extensions; plain C arrays were kept
# on the stack), Bt streamed once per row; 16-column blocks, then single columns, for the rest.
PRODUCT = """#ifndef HAMR_RNN_PRODUCT
#define HAMR_RNN_PRODUCT
typedef f32 hamr_v16 __attribute__((vector_size(64)));
typedef f32 hamr_v16u __attribute__((vector_size(64), aligned(4)));
static void hamr_rnn_product(i64 M, i64 N, i64 K, const f32 *A, i64 lda, const f32 *Bt, i64 ldb, f32 *C, i64 ldc) {
  if (M >= 16) { hamr_gemm(M, N, K, 1.0f, A, lda, 1, Bt, ldb, 1, 0, C, ldc); return; }
  for (i64 b = 0; b < M; b++) {
    const f32 *a = A + b * lda;
    f32 *c = C + b * ldc;
    i64 n0 = 0;
    for (; n0 + 64 <= N; n0 += 64) {
      hamr_v16 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
      const f32 *bt = Bt + n0;
      for (i64 k = 0; k < K; k++, bt += ldb) {
        const f32 ak = a[k];
        s0 += ak * *(const hamr_v16u *)bt;
        s1 += ak * *(const hamr_v16u *)(bt + 16);
        s2 += ak * *(const hamr_v16u *)(bt + 32);
        s3 += ak * *(const hamr_v16u *)(bt + 48);
      }
      *(hamr_v16u *)(c + n0) = s0;
      *(hamr_v16u *)(c + n0 + 16) = s1;
      *(hamr_v16u *)(c + n0 + 32) = s2;
      *(hamr_v16u *)(c + n0 + 48) = s3;
    }
    for (; n0 + 16 <= N; n0 += 16) {
      hamr_v16 s0 = {0};
      const f32 *bt = Bt + n0;
      for (i64 k = 0; k < K; k++, bt += ldb) s0 += a[k] * *(const hamr_v16u *)bt;
      *(hamr_v16u *)(c + n0) = s0;
    }
    for (; n0 < N; n0++) {
      f32 s0 = 0.0f;
      for (i64 k = 0; k < K; k++) s0 += a[k] * Bt[k * ldb + n0];
      c[n0] = s0;
    }
  }
}
#endif
"""

KERNEL = """#include <stdlib.h>
$ACTS
static void $name(const i64 *p, $ARGS) {
  const i64 S = p[0], NB = p[1], NI = p[2], NH = p[3], D = $D, G = $G, GH = G * NH, DGH = D * GH;
  const f32 *X = in0, *W = in1, *R = in2, *B = $B, *H0 = $H0, *C0 = $C0, *P = $P, *WP = $WP, *RT = $RT;
  const i32 *L = $L;
  f32 *Y = $Y, *YH = $YH, *YC = $YC;
  const i64 per_dir = NB * GH + 3 * NB * NH + 2 * NH;
  f32 *xw = (f32 *)malloc(sizeof(f32) * (S * NB * DGH + D * per_dir + (RT ? 0 : D * NH * GH) + 16));
  f32 *work = xw + S * NB * DGH;
  (void)C0; (void)P; (void)YC; (void)W;
  if (!RT) {
    f32 *own = work + D * per_dir;
    for (i64 d = 0; d < D; d++)
      for (i64 n = 0; n < GH; n++)
        for (i64 k = 0; k < NH; k++) own[(d * NH + k) * GH + n] = R[(d * GH + n) * NH + k];
    RT = own;
  }
  if (S * NB > 0 && NI > 0)
    hamr_gemm(S * NB, DGH, NI, 1.0f, X, NI, 1, W, 1, NI, WP, xw, DGH);
  else
    for (i64 i = 0; i < S * NB * DGH; i++) xw[i] = 0.0f;
  if (B)
    for (i64 r = 0; r < S * NB; r++)
      for (i64 d = 0; d < D; d++) {
        f32 *row = xw + r * DGH + d * GH;
        const f32 *wb = B + d * 2 * GH, *rb = wb + GH;
        for (i64 n = 0; n < GH; n++) row[n] += wb[n] + (n < $RB_FOLDED ? rb[n] : 0.0f);
      }
  #pragma omp parallel for schedule(static) num_threads(D) \
    if(D > 1 && S * NB * GH * NH >= 65536 && omp_get_max_threads() > 1 && !omp_in_parallel())
  for (i64 d = 0; d < D; d++) {
    const int rev = $REV;
    const f32 *Rt = RT + d * NH * GH, *Rb = B ? B + d * 2 * GH + GH : 0, *Pd = P ? P + d * 3 * NH : 0;
    f32 *hr = work + d * per_dir, *h = hr + NB * GH, *c = h + NB * NH, *tmp = c + NB * NH;
    f32 *rbh = tmp + NB * NH, *sink = rbh + NH;  /* GRU's R bias of the candidate (or 0); Y's row when Y is omitted */
    for (i64 j = 0; j < NH; j++) rbh[j] = Rb && G == 3 ? Rb[2 * NH + j] : 0.0f;
    (void)Pd; (void)tmp; (void)sink;
    for (i64 b = 0; b < NB; b++)
      for (i64 j = 0; j < NH; j++) {
        h[b * NH + j] = H0 ? H0[HIDX(d, b, j)] : 0.0f;
        c[b * NH + j] = C0 ? C0[HIDX(d, b, j)] : 0.0f;
      }
    for (i64 s = 0; s < S; s++) {
      const i64 t = rev ? S - 1 - s : s;
$STEP
    }
    for (i64 b = 0; b < NB; b++)
      for (i64 j = 0; j < NH; j++) {
        if (YH) YH[HIDX(d, b, j)] = h[b * NH + j];
        if (YC) YC[HIDX(d, b, j)] = c[b * NH + j];
      }
  }
  free(xw);
}
"""

RECURRENT_PRODUCT = """      hamr_rnn_product(NB, $N, NH, h, NH, Rt, GH, hr, GH);
"""

# One batch row's gates: the pre-activations are the projection (biases folded in) and the recurrent product.
ELEMENTS = """      for (i64 b = 0; b < NB; b++) {
        const f32 *xr = xw + XROW(t, b) * DGH + d * GH, *hb = hr + b * GH;
        f32 *hh = h + b * NH, *cc = c + b * NH, *y = Y ? Y + YIDX(t, d, b, 0) : sink;
        (void)cc;
        if (L && t >= (i64)L[b]) {
          for (i64 j = 0; j < NH; j++) y[j] = 0.0f;
          continue;
        }
        #define PRE(g) (xr[(g) * NH + j] + hb[(g) * NH + j])
        #pragma omp simd
        for (i64 j = 0; j < NH; j++) {
$BODY
          y[j] = hn;
        }
        #undef PRE
      }
"""

LSTM_BODY = """          const f32 cp = cc[j];
          const f32 gi = ACT(0, CLIP(PRE(0) + (P ? Pd[j] * cp : 0.0f)));
          const f32 gf = $FORGET;
          const f32 gc = ACT(1, CLIP(PRE(3)));
          const f32 cn = gf * cp + gi * gc;
          const f32 go = ACT(0, CLIP(PRE(1) + (P ? Pd[NH + j] * cn : 0.0f)));
          const f32 hn = go * ACT(2, cn);
          cc[j] = cn;
          hh[j] = hn;"""

RNN_BODY = """          const f32 hn = ACT(0, CLIP(PRE(0)));
          hh[j] = hn;"""

# linear_before_reset = 0: the candidate reads (r * h) R_h^T, a second product after the reset gate.
GRU_RESET = """      for (i64 b = 0; b < NB; b++) {
        const f32 *xr = xw + XROW(t, b) * DGH + d * GH, *hb = hr + b * GH;
        #pragma omp simd
        for (i64 j = 0; j < NH; j++) tmp[b * NH + j] = ACT(0, CLIP(xr[NH + j] + hb[NH + j])) * h[b * NH + j];
      }
      hamr_rnn_product(NB, NH, NH, tmp, NH, Rt + 2 * NH, GH, hr + 2 * NH, GH);
"""

GRU_BODY = """          const f32 z = ACT(0, CLIP(PRE(0)));
          const f32 r = ACT(0, CLIP(PRE(1)));
          const f32 cand = ACT(1, CLIP($CANDIDATE));
          const f32 hn = (1.0f - z) * cand + z * hh[j];
          hh[j] = hn;"""


def _activations(node, op: str) -> list[tuple[str, list[float]]] | str:
    """Per direction and slot: (name, [alpha, beta]); a reason string when one is unknown."""
    _, defaults, _ = SPECS[op]
    directions = 2 if node.attr("direction", "forward") == "bidirectional" else 1
    names = [n.decode() if isinstance(n, bytes) else n for n in node.attr("activations", [])]
    names = names or defaults * directions
    if len(names) != len(defaults) * directions:
        return f"{len(names)} activations"
    alphas = list(node.attr("activation_alpha", []) or [])
    betas = list(node.attr("activation_beta", []) or [])
    result = []
    for name in names:
        key = name.lower()
        if key not in ACTIVATIONS:
            return f"activation {name}"
        arity = len(ACTIVATIONS[key][1])
        args = list(ACTIVATIONS[key][1])
        if arity >= 1 and alphas:
            args[0] = alphas.pop(0)
        if arity >= 2 and betas:
            args[1] = betas.pop(0)
        result.append((key, args))
    return result


def input_weight_panels(w: np.ndarray) -> np.ndarray:
    """W [D, G*H, I] as the B operand (I x D*G*H) of the input projection, in hamr_gemm's panels."""
    return pack_b(np.asarray(w, dtype=np.float32).reshape(-1, w.shape[-1]), trans=True)


def recurrence_transposed(r: np.ndarray) -> np.ndarray:
    """R [D, G*H, H] as [D, H, G*H]: a step's product reads contiguous rows."""
    return np.ascontiguousarray(np.swapaxes(np.asarray(r, dtype=np.float32), 1, 2))


@register
class Recurrent(Lowering):
    ops = ("LSTM", "GRU", "RNN")

    def check(self, node):
        _, _, optional = SPECS[node.op]
        for i in range(3 + len(optional)):
            if not node.has_input(i):
                continue
            want = "int32" if i == 4 else "float32"
            if node.in_dtype(i) != want:
                return f"dtype {node.in_dtype(i)} of input {i}"
        if node.in_rank(0) != 3:
            return "rank"
        if node.attr("direction", "forward") not in ("forward", "reverse", "bidirectional"):
            return f"direction {node.attr('direction')}"
        if node.attr("layout", 0) not in (0, 1):
            return f"layout {node.attr('layout')}"
        acts = _activations(node, node.op)
        return acts if isinstance(acts, str) else None

    def dialects(self, node):
        hidden = node.attr("hidden_size") or (node.in_shape(2) or (None,))[-1]
        return ("c", "opencl") if isinstance(hidden, int) and 0 < hidden <= recurrent_cl.MAX_HIDDEN else ("c",)

    @staticmethod
    def dims(node, pc):
        x = pc.shape(node.inputs[0])
        seq, batch = (x[1], x[0]) if node.attr("layout", 0) else (x[0], x[1])
        directions = pc.shape(node.inputs[1])[0]
        hidden = pc.shape(node.inputs[2])[-1]
        return seq, batch, x[2], hidden, directions

    def infer(self, node, pc):
        seq, batch, _, hidden, d = self.dims(node, pc)
        layout = node.attr("layout", 0)
        y = (batch, seq, d, hidden) if layout else (seq, d, batch, hidden)
        state = (batch, d, hidden) if layout else (d, batch, hidden)
        return [y, state, state][: len(node.outputs)]

    def kernel(self, node):
        op = node.op
        gates, defaults, optional = SPECS[op]
        present = [i for i in range(3 + len(optional)) if node.has_input(i)]
        inputs = [node.inputs[i] for i in present]
        names = {role: "0" for role in ("B", "L", "H0", "C0", "P", "WP", "RT")}
        for role, i in zip(optional, range(3, 3 + len(optional))):
            if i in present:
                names[role] = f"in{present.index(i)}"
        derived = {}
        for role, source, name, derive in (
            ("WP", node.inputs[1], f"{node.inputs[1]}::rnn_panels", input_weight_panels),
            ("RT", node.inputs[2], f"{node.inputs[2]}::rnn_transposed", recurrence_transposed),
        ):
            if packs_weight(source):
                names[role] = f"in{len(inputs)}"
                inputs.append(name)
                derived[name] = (source, derive)
        outputs = [o for o in node.outputs[:3] if o]
        out_names = {role: "0" for role in ("Y", "YH", "YC")}
        for role, name in zip(("Y", "YH", "YC"), node.outputs[:3]):
            if name:
                out_names[role] = f"out{outputs.index(name)}"
        args = [f"const {'i32' if i == 4 else 'f32'} *in{k}" for k, i in enumerate(present)]
        args += [f"const f32 *in{k}" for k in range(len(present), len(inputs))]
        args += [f"f32 *out{k}" for k in range(len(outputs))]
        direction = node.attr("direction", "forward")
        rev = {"forward": "0", "reverse": "1", "bidirectional": "d == 1"}[direction]
        layout = node.attr("layout", 0)
        clip = node.attr("clip")
        acts = _activations(node, op)
        per_dir = len(defaults)
        helpers = []
        for k, (key, args_) in enumerate(acts):
            values = {"A": lit(args_[0], "f32") if args_ else "", "B": lit(args_[1], "f32") if len(args_) > 1 else ""}
            expr = render(ACTIVATIONS[key][0], **values)
            helpers.append(f"static inline f32 ${{name}}_a{k}(f32 x) {{ return {expr}; }}")
        same = acts[:per_dir] == acts[per_dir:] or len(acts) == per_dir
        act = "${name}_a{k0}(X_)" if same else "(d ? ${name}_a{k1}(X_) : ${name}_a{k0}(X_))"
        macros = []
        for slot in range(per_dir):
            body = act.replace("{k0}", str(slot)).replace("{k1}", str(per_dir + slot))
            macros.append(f"#define ACT_{slot}(X_) {body}")
        macros.append("#define ACT(K_, X_) ACT_##K_(X_)")
        clip_expr = f"H_MIN(H_MAX(X_, {lit(-float(clip), 'f32')}), {lit(float(clip), 'f32')})" if clip else "(X_)"
        macros.append(f"#define CLIP(X_) {clip_expr}")
        if layout:
            macros += [
                "#define HIDX(D_, B_, J_) (((B_) * D + (D_)) * NH + (J_))",
                "#define XROW(T_, B_) ((B_) * S + (T_))",
                "#define YIDX(T_, D_, B_, J_) ((((B_) * S + (T_)) * D + (D_)) * NH + (J_))",
            ]
        else:
            macros += [
                "#define HIDX(D_, B_, J_) (((D_) * NB + (B_)) * NH + (J_))",
                "#define XROW(T_, B_) ((T_) * NB + (B_))",
                "#define YIDX(T_, D_, B_, J_) ((((T_) * D + (D_)) * NB + (B_)) * NH + (J_))",
            ]
        step = self._step(node, op)
        template = (
            PRODUCT
            + KERNEL.replace("$ACTS", "\n".join(helpers + macros))
            + "".join(f"#undef {m.split()[1].split('(')[0]}\n" for m in macros)
        )
        # GRU with linear_before_reset keeps R's bias of the candidate inside r * (...): it is not folded
        rb_folded = "2 * NH" if op == "GRU" and node.attr("linear_before_reset", 0) else "GH"
        values = dict(
            ARGS=", ".join(args),
            D="(i64)" + ("2" if direction == "bidirectional" else "1"),
            G=str(gates),
            REV=rev,
            STEP=step,
            RB_FOLDED=rb_folded,
            **names,
            **out_names,
        )

        def params(pc):
            seq, batch, size, hidden, _ = self.dims(node, pc)
            return [seq, batch, size, hidden]

        sources = {"c": Source(template, values)}
        if "opencl" in self.dialects(node):
            sources["opencl"] = self._opencl(node, op, present, outputs, helpers + macros, values)

        return Kernel(
            inputs=inputs,
            outputs=outputs,
            n_params=4,
            params=params,
            sources=sources,
            label=op.lower(),
            derived=derived,
        )

    @staticmethod
    def _opencl(node, op: str, present: list[int], outputs: list, acts_and_macros: list[str], values: dict) -> Source:
        args = [f"__global const {'i32' if i == 4 else 'f32'} *in{k}" for k, i in enumerate(present)]
        args += [f"__global f32 *out{k}" for k in range(len(outputs))]
        phase, body = recurrent_cl.step(
            op, bool(node.attr("input_forget", 0)), bool(node.attr("linear_before_reset", 0))
        )
        group = recurrent_cl.RNN_GROUP
        hidden = node.attr("hidden_size") or node.in_shape(2)[-1]
        template = (
            recurrent_cl.CL_DOT
            + recurrent_cl.CL_RECURRENT.replace("$ACTS", "\n".join(acts_and_macros))
            .replace("$PHASE", phase)
            .replace("$BODY", body)
            + "".join(f"#undef {m.split()[1].split('(')[0]}\n" for m in acts_and_macros if m.startswith("#define"))
        )
        cl_values = {**values, "ARGS": ", ".join(args), "GROUP": str(group), "HMAX": str(hidden)}
        return Source(
            template, cl_values, lambda p: ((group * int(p[1]) * (2 if values["D"].endswith("2") else 1),), (group,))
        )

    @staticmethod
    def _step(node, op: str) -> str:
        if op == "LSTM":
            forget = (
                "1.0f - gi"
                if node.attr("input_forget", 0)
                else "ACT(0, CLIP(PRE(2) + (P ? Pd[2 * NH + j] * cp : 0.0f)))"
            )
            return render(RECURRENT_PRODUCT, N="GH") + render(ELEMENTS, BODY=render(LSTM_BODY, FORGET=forget))
        if op == "RNN":
            return render(RECURRENT_PRODUCT, N="GH") + render(ELEMENTS, BODY=RNN_BODY)
        if node.attr("linear_before_reset", 0):
            candidate = "xr[2 * NH + j] + r * (hb[2 * NH + j] + rbh[j])"
            return render(RECURRENT_PRODUCT, N="GH") + render(ELEMENTS, BODY=render(GRU_BODY, CANDIDATE=candidate))
        return (
            render(RECURRENT_PRODUCT, N="2 * NH")
            + GRU_RESET
            + render(ELEMENTS, BODY=render(GRU_BODY, CANDIDATE="PRE(2)"))
        )
