"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Scores are (N, C, d1...) and targets (N, d1...); position `pos_` is (n, d) with d the flattened
trailing dims, and class c of it is at n * C * Dd + c * Dd + d. With reduction "none" each
position is one work item; "sum" and "mean" run one work item that folds every position,
in position order, as onnx.reference sums.
"""

from __future__ import annotations

from hamr.ir.dtypes import FLOATS, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, numel
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render

# p: [items, N * Dd, C, Dd]
POSITION = (
    "const i64 C = p[2], Dd = p[3]; const i64 base_ = (pos_ / Dd) * C * Dd + pos_ % Dd; "
    "const i64 t_ = (i64)in1[pos_]; const i64 tc_ = t_ < 0 ? 0 : (t_ >= C ? C - 1 : t_); "
)

# lse_: the log of the sum of exp over the classes of the position (max-shifted)
LOG_SUM_EXP = (
    "$T mx_ = -INFINITY; for (i64 c = 0; c < C; c++) mx_ = H_MAX(mx_, in0[base_ + c * Dd]); "
    "$T se_ = 0; for (i64 c = 0; c < C; c++) se_ += exp(in0[base_ + c * Dd] - mx_); "
    "const $T lse_ = mx_ + log(se_); "
)


class _Loss(Lowering):
    dtypes = FLOATS
    softmax = False

    def check(self, node):
        dtype = node.in_dtype(0)
        if dtype not in self.dtypes:
            return f"dtype {dtype}"
        if node.in_dtype(1) not in ("int32", "int64"):
            return f"target dtype {node.in_dtype(1)}"
        if node.has_input(2) and node.in_dtype(2) != dtype:
            return f"weight dtype {node.in_dtype(2)}"
        if node.in_rank(0) is None or node.in_rank(0) < 2:
            return "rank"
        if node.attr("reduction", "mean") not in ("none", "sum", "mean"):
            return "reduction"
        return None

    def infer(self, node, pc):
        x = tuple(pc.shape(node.inputs[0]))
        target = tuple(pc.shape(node.inputs[1]))
        if target != x[:1] + x[2:]:
            raise ValueError(f"target shape {target} does not match scores {x}")
        if node.has_input(2) and tuple(pc.shape(node.inputs[2])) != x[1:2]:
            raise ValueError(f"weight shape {tuple(pc.shape(node.inputs[2]))} is not ({x[1]},)")
        loss = target if node.attr("reduction", "mean") == "none" else ()
        return [loss, x][: len(node.outputs)]

    def weight_denominator(self, node) -> bool:
        """Whether "mean" divides by the summed weights of the positions (else by their count)."""
        return True

    def kernel(self, node):
        t = ctype(node.in_dtype(0))
        reduction = node.attr("reduction", "mean")
        ignore = node.attr("ignore_index")
        has_weight = node.has_input(2)
        log_prob = len(node.outputs) > 1 and bool(node.outputs[1])
        out_lp = "out1" if log_prob else None

        weight = "in2[tc_]" if has_weight else f"({t})1"
        if ignore is not None:
            weight = f"(t_ == {int(ignore)} ? ({t})0 : {weight})"
        code = render_position(t, self.softmax, out_lp) + f"const {t} w_ = {weight}; "
        code += (
            f"const {t} loss_ = w_ == 0 ? ({t})0 : -w_ * (in0[base_ + tc_ * Dd]{' - lse_' if self.softmax else ''}); "
        )
        if reduction == "none":
            body = "const i64 pos_ = gid; " + code + "out0[pos_] = loss_; "
        else:
            denominator = "sw_" if self.weight_denominator(node) else f"({t})p[1]"
            result = f"sl_ / {denominator}" if reduction == "mean" else "sl_"
            body = (
                f"{t} sl_ = 0, sw_ = 0; for (i64 pos_ = 0; pos_ < p[1]; pos_++) {{ {code}sl_ += loss_; sw_ += w_; }} "
                f"out0[0] = {result}; "
            )
        x_name, target_name = node.inputs[0], node.inputs[1]

        def params(pc):
            x = pc.shape(x_name)
            positions = numel(pc.shape(target_name))
            return [positions if reduction == "none" else 1, positions, int(x[1]), numel(x[2:])]

        inputs = [name for name in node.inputs[:3] if name]
        outputs = [name for name in node.outputs if name]
        return Kernel(inputs, outputs, 4, params, body=body, label="loss", grain=16)


def render_position(t: str, softmax: bool, log_prob: str | None) -> str:
    code = POSITION
    if softmax:
        code += render(LOG_SUM_EXP, T=t)
        if log_prob:
            code += f"for (i64 c = 0; c < C; c++) {log_prob}[base_ + c * Dd] = in0[base_ + c * Dd] - lse_; "
    return code


@register
class NegativeLogLikelihoodLoss(_Loss):
    ops = ("NegativeLogLikelihoodLoss",)

    def weight_denominator(self, node):
        # onnx.reference divides by the position count when ignore_index is -1 and there is no weight
        return node.has_input(2) or node.attr("ignore_index") != -1


@register
class SoftmaxCrossEntropyLoss(_Loss):
    ops = ("SoftmaxCrossEntropyLoss",)
    softmax = True
