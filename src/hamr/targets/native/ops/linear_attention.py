"""LinearAttention (opset 27): the recurrent state update, one work item per state column.

The state of a key head is a (dk, dv) matrix; every update rule (decay per row, the delta
correction, the rank-one update) and every read (q . state) acts on its columns independently,
so work item (b, key head h, column m) carries column m through the time steps, in present_state
itself, and writes output column m of the query heads that read key head h.
"""

from __future__ import annotations

from hamr.ir.dtypes import ctype
from hamr.targets.native.ops.base import Kernel, Lowering, numel
from hamr.targets.native.ops.elementwise import lit
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render

QUERY, KEY, VALUE, PAST, DECAY, BETA = range(6)
RULES = {"linear": (False, False), "gated": (True, False), "delta": (False, True), "gated_delta": (True, True)}

# p: [items, T, Hq, Hkv, dk, dv, decay (row length, head stride, element stride), beta (row length, head stride)]
BODY = (
    "const i64 T = p[1], Hq = p[2], Hkv = p[3], dk = p[4], dv = p[5], G = Hq / Hkv; "
    "const i64 m = gid % dv, h = (gid / dv) % Hkv, b = gid / (dv * Hkv), so_ = (b * Hkv + h) * dk * dv + m; "
    "const $T sc_ = $SCALE; "
    "for (i64 d = 0; d < dk; d++) out1[so_ + d * dv] = $INIT; "
    "for (i64 t = 0; t < T; t++) { const i64 r_ = b * T + t, ko_ = r_ * Hkv * dk + h * dk; ${DECAY}"
    "$T v_ = in2[r_ * Hkv * dv + h * dv + m]; ${DELTA}"
    "for (i64 d = 0; d < dk; d++) out1[so_ + d * dv] += in1[ko_ + d] * v_; "
    "for (i64 g = 0; g < G; g++) { const i64 hq = h * G + g, qo_ = r_ * Hq * dk + hq * dk; $T o_ = 0; "
    "for (i64 d = 0; d < dk; d++) o_ += in0[qo_ + d] * out1[so_ + d * dv]; "
    "out0[r_ * Hq * dv + hq * dv + m] = sc_ * o_; } } "
)
DECAY_STEP = "for (i64 d = 0; d < dk; d++) out1[so_ + d * dv] *= exp($G[r_ * p[6] + h * p[7] + d * p[8]]); "
DELTA_STEP = (
    "{ $T ret_ = 0; for (i64 d = 0; d < dk; d++) ret_ += out1[so_ + d * dv] * in1[ko_ + d]; "
    "v_ = $B[r_ * p[9] + h * p[10]] * (v_ - ret_); } "
)


def _rule(node) -> str:
    rule = node.attr("update_rule", "gated_delta")
    return rule.decode() if isinstance(rule, bytes) else rule


@register
class LinearAttention(Lowering):
    ops = ("LinearAttention",)
    dtypes = frozenset({"float32"})  # onnx.reference computes in float32 whatever the input type

    def check(self, node):
        if any(node.has_input(i) and node.in_dtype(i) not in self.dtypes for i in range(6)):
            return f"dtype {node.in_dtype(0)}"
        if any(node.in_rank(i) != 3 for i in (QUERY, KEY, VALUE)):
            return "rank"
        rule = RULES.get(_rule(node))
        if rule is None or rule != (node.has_input(DECAY), node.has_input(BETA)):
            return f"update_rule {_rule(node)} with these inputs"
        heads = node.attr("q_num_heads"), node.attr("kv_num_heads")
        if not all(heads) or heads[0] % heads[1]:
            return "head counts"
        if len(node.outputs) < 2 or not node.outputs[1]:
            return "without present_state"
        return None

    @staticmethod
    def dims(node, pc) -> tuple[int, int, int, int, int, int]:
        q, k, v = (tuple(pc.shape(node.inputs[i])) for i in (QUERY, KEY, VALUE))
        hq, hkv = int(node.attr("q_num_heads")), int(node.attr("kv_num_heads"))
        b, t = q[0], q[1]
        if k[:2] != (b, t) or v[:2] != (b, t) or q[2] % hq or k[2] % hkv or v[2] % hkv or q[2] // hq != k[2] // hkv:
            raise ValueError(f"query, key and value shapes {q}, {k}, {v} do not fit {hq} and {hkv} heads")
        return b, t, hq, hkv, k[2] // hkv, v[2] // hkv

    def infer(self, node, pc):
        b, t, hq, hkv, dk, dv = self.dims(node, pc)
        state = (b, hkv, dk, dv)
        if node.has_input(PAST) and tuple(pc.shape(node.inputs[PAST])) != state:
            raise ValueError(f"past_state shape {tuple(pc.shape(node.inputs[PAST]))} is not {state}")
        if node.has_input(DECAY) and tuple(pc.shape(node.inputs[DECAY])) not in ((b, t, hkv), (b, t, hkv * dk)):
            raise ValueError(f"decay shape {tuple(pc.shape(node.inputs[DECAY]))} does not fit {(b, t, hkv * dk)}")
        if node.has_input(BETA) and tuple(pc.shape(node.inputs[BETA])) not in ((b, t, hkv), (b, t, 1)):
            raise ValueError(f"beta shape {tuple(pc.shape(node.inputs[BETA]))} does not fit {(b, t, hkv)}")
        return [(b, t, hq * dv), state]

    def kernel(self, node):
        t = ctype(node.in_dtype(QUERY))
        inputs = [name for name in node.inputs if name]

        def arg(i):
            return f"in{inputs.index(node.inputs[i])}"

        scale = float(node.attr("scale", 0.0) or 0.0)
        body = render(
            BODY,
            T=t,
            SCALE=lit(scale, t) if scale else f"({t})1 / sqrt(({t})dk)",
            INIT=f"{arg(PAST)}[so_ + d * dv]" if node.has_input(PAST) else f"({t})0",
            DECAY=render(DECAY_STEP, G=arg(DECAY)) if node.has_input(DECAY) else "",
            DELTA=render(DELTA_STEP, T=t, B=arg(BETA)) if node.has_input(BETA) else "",
        )

        def params(pc):
            b, _, hq, hkv, dk, dv = self.dims(node, pc)
            decay, beta = [0, 0, 0], [0, 0]
            if node.has_input(DECAY):
                row = pc.shape(node.inputs[DECAY])[2]
                decay = [row, 1, 0] if row == hkv else [row, dk, 1]
            if node.has_input(BETA):
                row = pc.shape(node.inputs[BETA])[2]
                beta = [row, 1 if row == hkv else 0]
            return [b * hkv * dv, pc.shape(node.inputs[QUERY])[1], hq, hkv, dk, dv] + decay + beta

        grain = 4 * numel([d if isinstance(d, int) else 16 for d in (node.in_shape(QUERY) or ())[1:]])
        outputs = list(node.outputs[:2])
        return Kernel(inputs, outputs, 11, params, body=body, label="linear_attention", grain=grain)
