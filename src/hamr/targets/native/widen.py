"""float16 and bfloat16 through the float32 lowerings: a node whose lowering refuses a storage float runs on f32
copies of those values, between synthetic Casts (which fuse with the elementwise code around them).

`widen(view)` gives the Casts in, the node seen with f32 in place of each float16/bfloat16 value (values named
`<name>::f32`), and the Casts out. The node computes in f32 and rounds once, at the Cast out.
"""

from __future__ import annotations

import numpy as np

from hamr.ir.node_view import NodeView

WIDENED = frozenset({"float16", "bfloat16"})
SUFFIX = "::f32"
# onnx.reference rounds every step of these to float16 (max, exp, sum, quotient); rounding once differs by an ulp,
# more than the node suite's rtol 1e-3 (test_attention_4d_causal_fp16_expanded), so they keep the fallback.
STEPWISE = frozenset({"Softmax", "LogSoftmax"})


class WideView(NodeView):
    """The node, with f32 values named `<name>::f32` in place of its float16/bfloat16 ones."""

    def __init__(self, base: NodeView):
        self.__dict__.update(base.__dict__)
        self.base = base
        self.inputs = [n + SUFFIX if n and base.in_dtype(i) in WIDENED else n for i, n in enumerate(base.inputs)]
        self.outputs = [n + SUFFIX if base.out_dtype(k) in WIDENED else n for k, n in enumerate(base.outputs)]

    def in_dtype(self, i):
        dtype = self.base.in_dtype(i)
        return "float32" if dtype in WIDENED else dtype

    def out_dtype(self, i=0):
        dtype = self.base.out_dtype(i)
        return "float32" if dtype in WIDENED else dtype

    def const(self, i):
        value = self.base.const(i)
        return value.astype(np.float32) if value is not None and self.base.in_dtype(i) in WIDENED else value


class CastView(NodeView):
    """A Cast that is in no graph: `src` (of `src_dtype`) to `dst` (of `dst_dtype`), both of `shape`."""

    def __init__(self, name: str, src: str, dst: str, src_dtype: str, dst_dtype: str, shape, opset: int):
        self.node = None
        self.op, self.domain, self.name, self.opset = "Cast", "", name, opset
        self.inputs, self.outputs = [src], [dst]
        self.dtypes, self.shape = (src_dtype, dst_dtype), shape

    def attr(self, name, default=None):
        return default

    def in_dtype(self, i):
        return self.dtypes[0] if i == 0 else None

    def out_dtype(self, i=0):
        return self.dtypes[1]

    def in_shape(self, i):
        return self.shape if i == 0 else None

    def out_shape(self, i=0):
        return self.shape

    def const(self, i):
        return None


def widen(view: NodeView) -> tuple[list[CastView], WideView, list[CastView]] | None:
    """(Casts in, the node on f32 values, Casts out), or None when the node has no float16/bfloat16 value."""
    ins = [i for i, n in enumerate(view.inputs) if n and view.in_dtype(i) in WIDENED]
    outs = [k for k, n in enumerate(view.outputs) if n and view.out_dtype(k) in WIDENED]
    if (not ins and not outs) or view.op in STEPWISE:
        return None
    wide = WideView(view)
    before = [
        CastView(wide.inputs[i], view.inputs[i], wide.inputs[i], view.in_dtype(i), "float32", view.in_shape(i), 21)
        for i in ins
    ]
    after = [
        CastView(wide.outputs[k], wide.outputs[k], view.outputs[k], "float32", view.out_dtype(k), view.out_shape(k), 21)
        for k in outs
    ]
    return before, wide, after
