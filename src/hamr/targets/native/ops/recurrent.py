"""LSTM, GRU and RNN (float32, C dialect): one kernel per node.

The input projection of every timestep is one sgemm (``X W^T`` for all rows at once); each
step then runs the recurrent product ``H R^T`` as one sgemm and the gates elementwise.
Every attribute is honoured: direction (forward, reverse, bidirectional), activations with
their alpha and beta, clip, input_forget, layout, sequence_lens, initial_h / initial_c,
peepholes, and GRU's linear_before_reset. Omitted outputs are not written.
"""

from __future__ import annotations

from hamr.targets.native.ops.base import Kernel, Lowering, Source
from hamr.targets.native.ops.elementwise import lit
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render

# name -> (expression of x, alpha and beta defaults); alpha and beta are consumed in order by the
# activations that take them, as onnxruntime reads activation_alpha / activation_beta.
ACTIVATIONS = {
    "relu": ("H_MAX(x, 0.0f)", ()),
    "tanh": ("tanh(x)", ()),
    "sigmoid": ("1.0f / (1.0f + exp(-x))", ()),
    "affine": ("$A * x + $B", (1.0, 0.0)),
    "leakyrelu": ("(x >= 0.0f ? x : $A * x)", (0.01,)),
    "thresholdedrelu": ("(x > $A ? x : 0.0f)", (1.0,)),
    "scaledtanh": ("$A * tanh($B * x)", (1.0, 1.0)),
    "hardsigmoid": ("H_MAX(0.0f, H_MIN(1.0f, $A * x + $B))", (0.2, 0.5)),
    "elu": ("(x >= 0.0f ? x : $A * (exp(x) - 1.0f))", (1.0,)),
    "softsign": ("x / (1.0f + fabs(x))", ()),
    "softplus": ("log(1.0f + exp(x))", ()),
}

# op -> (gates, activations per direction, their defaults, optional inputs after X, W, R)
SPECS = {
    "LSTM": (4, ["sigmoid", "tanh", "tanh"], ("B", "L", "H0", "C0", "P")),
    "GRU": (3, ["sigmoid", "tanh"], ("B", "L", "H0")),
    "RNN": (1, ["tanh"], ("B", "L", "H0")),
}

KERNEL = """#include <stdlib.h>
$ACTS
static void $name(const i64 *p, $ARGS) {
  const i64 S = p[0], NB = p[1], NI = p[2], NH = p[3], D = $D, G = $G, GH = G * NH;
  const f32 *X = in0, *W = in1, *R = in2, *B = $B, *H0 = $H0, *C0 = $C0, *P = $P;
  const i32 *L = $L;
  f32 *Y = $Y, *YH = $YH, *YC = $YC;
  f32 *xw = (f32 *)malloc(sizeof(f32) * (S * NB * GH + NB * GH + 3 * NB * NH + 16));
  f32 *hr = xw + S * NB * GH, *h = hr + NB * GH, *c = h + NB * NH, *tmp = c + NB * NH;
  (void)tmp; (void)c; (void)C0; (void)P; (void)YC;
  for (i64 d = 0; d < D; d++) {
    const int rev = $REV;
    const f32 *Wd = W + d * GH * NI, *Rd = R + d * GH * NH;
    const f32 *Wb = B ? B + d * 2 * GH : 0, *Rb = B ? B + d * 2 * GH + GH : 0;
    const f32 *Pd = P ? P + d * 3 * NH : 0;
    (void)Pd; (void)Rb; (void)Wb;
    if (S * NB > 0 && NI > 0)
      hamr_sgemm(101, 111, 112, (int)(S * NB), (int)GH, (int)NI, 1.0f, X, (int)NI, Wd, (int)NI, 0.0f, xw, (int)GH);
    else
      for (i64 i = 0; i < S * NB * GH; i++) xw[i] = 0.0f;
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

RECURRENT_PRODUCT = """      if (NH > 0 && NB > 0)
        hamr_sgemm(101, 111, 112, (int)NB, (int)$N, (int)NH, 1.0f, h, (int)NH, Rd, (int)NH, 0.0f, hr, (int)GH);
      else
        for (i64 i = 0; i < NB * GH; i++) hr[i] = 0.0f;
"""

# Each gate's pre-activation: the input projection, the recurrent product and both biases.
ELEMENTS = """      #pragma omp parallel for schedule(static) if(NB * NH > 16384)
      for (i64 e = 0; e < NB * NH; e++) {
        const i64 b = e / NH, j = e % NH;
        const f32 *xr = xw + XROW(t, b) * GH, *hb = hr + b * GH;
        const int on = !L || t < (i64)L[b];
        #define PRE(g) (xr[(g) * NH + j] + hb[(g) * NH + j] + (B ? Wb[(g) * NH + j] + Rb[(g) * NH + j] : 0.0f))
$BODY
        #undef PRE
      }
"""

LSTM_BODY = """        const f32 cp = c[e];
        const f32 gi = ACT(0, CLIP(PRE(0) + (P ? Pd[j] * cp : 0.0f)));
        const f32 gf = $FORGET;
        const f32 gc = ACT(1, CLIP(PRE(3)));
        const f32 cn = gf * cp + gi * gc;
        const f32 go = ACT(0, CLIP(PRE(1) + (P ? Pd[NH + j] * cn : 0.0f)));
        const f32 hn = go * ACT(2, cn);
        if (on) { c[e] = cn; h[e] = hn; }
        if (Y) Y[YIDX(t, d, b, j)] = on ? hn : 0.0f;"""

RNN_BODY = """        const f32 hn = ACT(0, CLIP(PRE(0)));
        if (on) h[e] = hn;
        if (Y) Y[YIDX(t, d, b, j)] = on ? hn : 0.0f;"""

# linear_before_reset = 0: the candidate reads (r * h) R_h^T, a second product after the reset gate.
GRU_RESET = """      #pragma omp parallel for schedule(static) if(NB * NH > 16384)
      for (i64 e = 0; e < NB * NH; e++) {
        const i64 b = e / NH, j = e % NH;
        const f32 *xr = xw + XROW(t, b) * GH, *hb = hr + b * GH;
        const f32 rb = B ? Wb[NH + j] + Rb[NH + j] : 0.0f;
        tmp[e] = ACT(0, CLIP(xr[NH + j] + hb[NH + j] + rb)) * h[e];
      }
      if (NH > 0 && NB > 0)
        hamr_sgemm(101, 111, 112, (int)NB, (int)NH, (int)NH, 1.0f, tmp, (int)NH, Rd + 2 * NH * NH, (int)NH, 0.0f,
                   hr + 2 * NH, (int)GH);
"""

GRU_BODY = """        const f32 z = ACT(0, CLIP(PRE(0)));
        const f32 r = ACT(0, CLIP(PRE(1)));
        const f32 rh = B ? Rb[2 * NH + j] : 0.0f, wh = B ? Wb[2 * NH + j] : 0.0f;
        const f32 cand = ACT(1, CLIP($CANDIDATE));
        const f32 hn = (1.0f - z) * cand + z * h[e];
        if (on) h[e] = hn;
        if (Y) Y[YIDX(t, d, b, j)] = on ? hn : 0.0f;"""


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
        return ("c",)

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
        names = {role: "0" for role in ("B", "L", "H0", "C0", "P")}
        for role, i in zip(optional, range(3, 3 + len(optional))):
            if i in present:
                names[role] = f"in{present.index(i)}"
        outputs = [o for o in node.outputs[:3] if o]
        out_names = {role: "0" for role in ("Y", "YH", "YC")}
        for role, name in zip(("Y", "YH", "YC"), node.outputs[:3]):
            if name:
                out_names[role] = f"out{outputs.index(name)}"
        args = [f"const {'i32' if i == 4 else 'f32'} *in{k}" for k, i in enumerate(present)]
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
        n_dirs = len(acts) // per_dir
        act = "(d ? ${name}_a{k1}(X_) : ${name}_a{k0}(X_))" if n_dirs == 2 else "${name}_a{k0}(X_)"
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
        template = KERNEL.replace("$ACTS", "\n".join(helpers + macros)) + "".join(
            f"#undef {m.split()[1].split('(')[0]}\n" for m in macros
        )
        values = dict(
            ARGS=", ".join(args),
            D="(i64)" + ("2" if direction == "bidirectional" else "1"),
            G=str(gates),
            REV=rev,
            STEP=step,
            **names,
            **out_names,
        )

        def params(pc):
            seq, batch, size, hidden, _ = self.dims(node, pc)
            return [seq, batch, size, hidden]

        return Kernel(
            inputs=inputs,
            outputs=outputs,
            n_params=4,
            params=params,
            sources={"c": Source(template, values)},
            label=op.lower(),
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
            candidate = "xr[2 * NH + j] + wh + r * (hb[2 * NH + j] + rh)"
            return render(RECURRENT_PRODUCT, N="GH") + render(ELEMENTS, BODY=render(GRU_BODY, CANDIDATE=candidate))
        candidate = "xr[2 * NH + j] + hb[2 * NH + j] + rh + wh"
        return (
            render(RECURRENT_PRODUCT, N="2 * NH")
            + GRU_RESET
            + render(ELEMENTS, BODY=render(GRU_BODY, CANDIDATE=candidate))
        )
