"""TopK: one work item per row keeps the row's k best in its outputs, sorted, as it scans the row.

An element enters when it beats the current k-th (or fewer than k are kept) and is inserted
in order, shifting the worse ones down. The row is scanned in index order and only a strictly
better element moves ahead, so ties keep the lower index first, as `onnx.reference` does; NaN
counts as the largest value. Most elements of a long row are rejected by one comparison.
"""

from __future__ import annotations

from hamr.ir.dtypes import FLOATS, NUMERIC, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, normalize_axis, numel
from hamr.targets.native.ops.movement import values_of
from hamr.targets.native.ops.registry import register


def _better(a: str, b: str, largest: bool, floating: bool) -> str:
    """C condition: `a` comes strictly before `b`."""
    if not floating:
        return f"({a} > {b})" if largest else f"({a} < {b})"
    if largest:
        return f"({a} > {b} || ({a} != {a} && {b} == {b}))"
    return f"({a} < {b} || ({b} != {b} && {a} == {a}))"


@register
class TopK(Lowering):
    ops = ("TopK",)
    shape_inputs = (1,)
    dtypes = NUMERIC

    def check(self, node):
        reason = super().check(node)
        if reason is None and not node.in_rank(0):
            reason = "unknown rank" if node.in_rank(0) is None else "rank 0"
        if reason is None and any(not name for name in node.outputs):
            reason = "skipped optional output"
        return reason

    def k(self, node, pc) -> int:
        return int(node.attr("k")) if node.opset < 10 else values_of(pc, node.inputs[1])[0]

    def infer(self, node, pc):
        shape = list(pc.shape(node.inputs[0]))
        axis = normalize_axis(node.attr("axis", -1), len(shape))
        k = self.k(node, pc)
        if not 0 <= k <= shape[axis]:
            raise ValueError(f"k = {k} for an axis of {shape[axis]}")
        shape[axis] = k
        return [tuple(shape)] * 2

    def kernel(self, node):
        rank = node.in_rank(0)
        axis = normalize_axis(node.attr("axis", -1), rank)
        largest = bool(node.attr("largest", 1))
        t = ctype(node.in_dtype(0))
        x_name = node.inputs[0]

        def params(pc):
            shape = pc.shape(x_name)
            inner = numel(shape[axis + 1 :])
            return [numel(shape[:axis]) * inner, inner, int(shape[axis]), self.k(node, pc)]

        better = _better("x_", "out0[ob_ + (m_ - 1) * in_]", largest, node.in_dtype(0) in FLOATS)
        shift_past = _better("x_", "out0[ob_ + (s_ - 1) * in_]", largest, node.in_dtype(0) in FLOATS)
        body = (
            "const i64 in_ = p[1], nr_ = p[2], kk_ = p[3]; "
            "const i64 b_ = (gid / in_) * nr_ * in_ + gid % in_, ob_ = (gid / in_) * kk_ * in_ + gid % in_; "
            "i64 m_ = 0; "
            f"for (i64 j_ = 0; j_ < nr_ && kk_ > 0; j_++) {{ const {t} x_ = in0[b_ + j_ * in_]; "
            f"if (m_ == kk_ && !{better}) continue; "
            "i64 s_ = m_ < kk_ ? m_++ : kk_ - 1; "
            f"while (s_ > 0 && {shift_past}) {{ out0[ob_ + s_ * in_] = out0[ob_ + (s_ - 1) * in_]; "
            "out1[ob_ + s_ * in_] = out1[ob_ + (s_ - 1) * in_]; s_--; } "
            "out0[ob_ + s_ * in_] = x_; out1[ob_ + s_ * in_] = j_; }"
        )
        shape = node.in_shape(0)
        grain = shape[axis] if isinstance(shape[axis], int) else 256
        return Kernel([x_name], list(node.outputs), 4, params, body=body, label="topk", grain=grain)
