"""Ops of transformer blocks: RotaryEmbedding, and the Swish and SwiGLU activations (elementwise)."""

from __future__ import annotations

from hamr.ir.dtypes import FLOATS, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, numel
from hamr.targets.native.ops.elementwise import Elementwise, lit
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render

SWISH = "($x * (($T)1 / (($T)1 + exp(-$ALPHA * $x))))"


@register
class Swish(Elementwise):
    ops = ("Swish",)

    def check_more(self, node):
        return None if node.in_dtype(0) in FLOATS else f"dtype {node.in_dtype(0)}"

    def expr(self, node, args):
        t = ctype(node.out_dtype())
        return [render(SWISH, x=args[0], T=t, ALPHA=lit(float(node.attr("alpha", 1.0)), t))]


@register
class SwiGLU(Swish):
    ops = ("SwiGLU",)

    def check_more(self, node):
        if node.in_dtype(0) not in FLOATS or node.in_dtype(1) != node.in_dtype(0):
            return f"dtype {node.in_dtype(0)}"
        return None

    def expr(self, node, args):
        return [f"({super().expr(node, args)[0]} * {args[1]})"]


# One work item per element (b, s, k) of a head's row; the row starts at gid - k.
# p: [items, head size, elements per position step, sequence length, elements per batch, rotary dim, cache rows]
# (position ids out of the cache's range read its nearest row)
ROTARY = (
    "const i64 hd = p[1], S = p[3], rd = p[5], hf_ = rd / 2, k = gid % hd, row_ = gid - k; "
    "const i64 s = (gid / p[2]) % S, b = gid / p[4]; "
    "if (k >= rd) { out0[gid] = in0[gid]; } else { "
    "const i64 c_ = $CACHE_ROW * hf_; "
    "$PAIR "
    "const $T cs_ = in1[c_ + m_], sn_ = in2[c_ + m_]; "
    "out0[gid] = second_ ? sn_ * x1_ + cs_ * x2_ : cs_ * x1_ - sn_ * x2_; } "
)

# m_: the cache column; x1_, x2_: the pair element k belongs to; second_: k is its second hf_
PAIRS = {
    False: "const int second_ = k >= hf_; const i64 m_ = second_ ? k - hf_ : k; "
    "const $T x1_ = in0[row_ + m_], x2_ = in0[row_ + m_ + hf_]; ",
    True: "const int second_ = k % 2; const i64 m_ = k / 2; "
    "const $T x1_ = in0[row_ + 2 * m_], x2_ = in0[row_ + 2 * m_ + 1]; ",
}


@register
class RotaryEmbedding(Lowering):
    ops = ("RotaryEmbedding",)
    dtypes = FLOATS

    def check(self, node):
        dtype = node.in_dtype(0)
        if dtype not in self.dtypes or node.in_dtype(1) != dtype or node.in_dtype(2) != dtype:
            return f"dtype {dtype}"
        if node.in_rank(0) not in (3, 4):
            return "rank"
        if node.in_rank(0) == 3 and not node.attr("num_heads"):
            return "3-D input without num_heads"
        if node.has_input(3) and node.in_dtype(3) not in ("int32", "int64"):
            return f"position_ids dtype {node.in_dtype(3)}"
        return None

    def infer(self, node, pc):
        x = tuple(pc.shape(node.inputs[0]))
        cos, sin = tuple(pc.shape(node.inputs[1])), tuple(pc.shape(node.inputs[2]))
        heads = x[1] if len(x) == 4 else int(node.attr("num_heads"))
        hidden = x[-1] * (x[1] if len(x) == 4 else 1)
        head_size = hidden // heads if heads else 0
        rotary_dim = int(node.attr("rotary_embedding_dim", 0) or 0) or head_size
        seq = x[2] if len(x) == 4 else x[1]
        if not heads or hidden % heads or rotary_dim % 2 or rotary_dim > head_size:
            raise ValueError(f"input shape {x} has no {heads} heads with a rotary dimension of {rotary_dim}")
        rows = (len(cos) == 2) if node.has_input(3) else (cos[:2] == (x[0], seq) and len(cos) == 3)
        if not rows or cos != sin or cos[-1] != rotary_dim // 2:
            raise ValueError(f"cos and sin cache shapes {cos}, {sin} do not fit input {x}")
        if node.has_input(3) and tuple(pc.shape(node.inputs[3])) != (x[0], seq):
            raise ValueError(f"position_ids shape {tuple(pc.shape(node.inputs[3]))} is not {(x[0], seq)}")
        return [x]

    def kernel(self, node):
        t = ctype(node.in_dtype(0))
        x_name, cos_name = node.inputs[0], node.inputs[1]
        rank4 = node.in_rank(0) == 4
        heads = node.attr("num_heads")
        rotary_dim = int(node.attr("rotary_embedding_dim", 0) or 0)

        def params(pc):
            x = pc.shape(x_name)
            if rank4:
                _, h, seq, hd = x
                step = hd
            else:
                _, seq, hidden = x
                h, hd, step = int(heads), hidden // int(heads), hidden
            return [numel(x), hd, step, seq, h * seq * hd, rotary_dim or hd, pc.shape(cos_name)[0]]

        cache_row = "H_MIN(H_MAX((i64)in3[b * S + s], 0), p[6] - 1)" if node.has_input(3) else "(b * S + s)"
        body = render(ROTARY, T=t, CACHE_ROW=cache_row, PAIR=render(PAIRS[bool(node.attr("interleaved", 0))], T=t))
        inputs = [name for name in node.inputs[:4] if name]
        return Kernel(inputs, [node.outputs[0]], 7, params, body=body, label="rotary")
