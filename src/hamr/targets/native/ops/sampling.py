"""GridSample and AffineGrid: sampling an input at normalised coordinates, and making those coordinates.

GridSample is one work item per output element (n, c, output position). It reads the
position's coordinates from the grid (the grid's last axis lists them innermost spatial dim
first), maps them to input pixels as `onnx.reference` does in f32, and sums the taps of
every spatial dim (1 for nearest, 2 for linear, 4 for cubic), each tap's index padded by
zeros, border clamping or reflection. 1-D, 2-D and 3-D inputs share the code, unrolled
over the static spatial rank.
"""

from __future__ import annotations

from hamr.ir.dtypes import FLOATS, ctype
from hamr.targets.native.ops.base import Kernel, Lowering, numel
from hamr.targets.native.ops.movement import coords, values_of
from hamr.targets.native.ops.registry import register

MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "cubic": "cubic", "bicubic": "cubic"}
PADDINGS = ("zeros", "border", "reflection")
TAPS = {"nearest": 1, "linear": 2, "cubic": 4}
CUBIC_A = -0.75


def _text(node, name: str, default: str) -> str:
    value = node.attr(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _reflect(v: str, lo: str, hi: str) -> str:
    """`v` reflected by the near border until it lies in [lo, hi] (the reference's loop, closed form)."""
    lo, hi = f"({lo})", f"({hi})"
    return (
        f"if (({v} < {lo} || {v} > {hi}) && {hi} <= {lo}) {v} = {lo}; "
        f"else if ({v} < {lo} || {v} > {hi}) {{ const f32 rg_ = {hi} - {lo}; "
        f"const f32 dx_ = {v} < {lo} ? {lo} - {v} : {v} - {hi}; const i64 k_ = (i64)(dx_ / rg_); "
        f"const f32 r_ = dx_ - (f32)k_ * rg_; const int low_ = {v} < {lo}; "
        f"{v} = (k_ % 2 == 0) == low_ ? {lo} + r_ : {hi} - r_; }}"
    )


def _tap_weights(mode: str, a: int) -> str:
    """Declares the tap weights w{a}_0.. of dim `a` from its fraction t{a}."""
    t = f"t{a}"
    if mode == "nearest":
        return f"const f32 w{a}_0 = 1.0f;"
    if mode == "linear":
        return f"const f32 w{a}_0 = 1.0f - {t}, w{a}_1 = {t};"
    A = f"({CUBIC_A!r}f)"
    return (
        f"const f32 u{a}_ = {t} + 1.0f, v{a}_ = 1.0f - {t}, z{a}_ = 2.0f - {t}; "
        f"const f32 w{a}_0 = (({A} * u{a}_ - 5.0f * {A}) * u{a}_ + 8.0f * {A}) * u{a}_ - 4.0f * {A}; "
        f"const f32 w{a}_1 = (({A} + 2.0f) * {t} - ({A} + 3.0f)) * {t} * {t} + 1.0f; "
        f"const f32 w{a}_2 = (({A} + 2.0f) * v{a}_ - ({A} + 3.0f)) * v{a}_ * v{a}_ + 1.0f; "
        f"const f32 w{a}_3 = (({A} * z{a}_ - 5.0f * {A}) * z{a}_ + 8.0f * {A}) * z{a}_ - 4.0f * {A};"
    )


@register
class GridSample(Lowering):
    ops = ("GridSample",)
    dtypes = FLOATS

    def check(self, node):
        if node.in_dtype(0) not in FLOATS or node.in_dtype(1) not in FLOATS:
            return f"dtype {node.in_dtype(0)}"
        mode, padding = _text(node, "mode", "linear"), _text(node, "padding_mode", "zeros")
        if mode not in MODES:
            return f"mode {mode}"
        if padding not in PADDINGS:
            return f"padding_mode {padding}"
        rank = node.in_rank(0)
        if rank is None or not 3 <= rank <= 5:
            return "rank"
        return None

    def infer(self, node, pc):
        x, grid = pc.shape(node.inputs[0]), pc.shape(node.inputs[1])
        if len(grid) != len(x) or grid[-1] != len(x) - 2 or grid[0] != x[0]:
            raise ValueError(f"grid of shape {tuple(grid)} for an input of shape {tuple(x)}")
        return [(x[0], x[1], *grid[1:-1])]

    def kernel(self, node):
        r = node.in_rank(0) - 2
        mode = MODES[_text(node, "mode", "linear")]
        padding = _text(node, "padding_mode", "zeros")
        align = bool(node.attr("align_corners", 0))
        t = ctype(node.in_dtype(0))
        x_name, grid_name = node.inputs[0], node.inputs[1]

        def params(pc):
            out = self.infer(node, pc)[0]
            return [numel(out), *out, *pc.shape(x_name)[2:]]

        dim = lambda a: f"p[{3 + r + a}]"  # noqa: E731  (input spatial dim a)
        lines = [coords(2 + r, 1)]
        grid_at = "(" * r + "c0" + "".join(f" * p[{3 + a}] + c{2 + a})" for a in range(r)) + f" * {r}"
        lines.append(f"const i64 g_ = {grid_at};")
        for a in range(r):
            d = dim(a)
            lo, hi = ("0.0f", f"(f32)({d} - 1)") if align else ("-0.5f", f"(f32){d} - 0.5f")
            nx = f"(f32)in1[g_ + {r - 1 - a}]"
            x = f"x{a}"
            if align:
                lines.append(f"f32 {x} = ({nx} + 1.0f) / 2.0f * (f32)({d} - 1);")
            else:
                lines.append(f"f32 {x} = (({nx} + 1.0f) * (f32){d} - 1.0f) / 2.0f;")
            if mode == "nearest":
                lines.append(f"{x} = rint({x});")
            if padding == "border":
                lines.append(f"if ({x} < {lo} || {x} > {hi}) {x} = H_MIN(H_MAX({x}, 0.0f), (f32)({d} - 1));")
            elif padding == "reflection":
                lines.append(_reflect(x, lo, hi))
            if mode == "nearest":
                lines.append(f"const i64 f{a} = (i64){x}; const f32 t{a} = 0.0f;")
            else:
                shift = 0 if mode == "linear" else 1  # cubic taps start one pixel before floor(x)
                lines.append(f"const f32 fl{a}_ = floor({x}); const i64 f{a} = (i64)fl{a}_ - {shift};")
                lines.append(f"const f32 t{a} = {x} - fl{a}_;")
            lines.append(_tap_weights(mode, a))
        lines.append(f"const i64 base_ = (c0 * p[2] + c1){''.join(f' * {dim(a)}' for a in range(r))};")
        lines.append(f"{t} acc_ = 0;")
        lines.append(self._taps(r, TAPS[mode], padding, align, t, dim))
        lines.append("out0[gid] = acc_;")
        grain = TAPS[mode] ** r
        return Kernel(
            [x_name, grid_name],
            [node.outputs[0]],
            3 + 2 * r,
            params,
            body=" ".join(lines),
            label="gridsample",
            grain=grain,
        )

    @staticmethod
    def _taps(r: int, n: int, padding: str, align: bool, t: str, dim) -> str:
        """Unrolled sum over the taps of every dim: weight times the padded pixel."""
        parts = []
        for a in range(r):
            d = dim(a)
            idx = f"i{a}_"
            head = f"for (int k{a} = 0; k{a} < {n}; k{a}++) {{ i64 {idx} = f{a} + k{a}; "
            weights = " : ".join(f"k{a} == {k} ? w{a}_{k}" for k in range(n - 1)) + (
                f" : w{a}_{n - 1}" if n > 1 else f"w{a}_0"
            )
            head += f"const f32 ww{a}_ = {'ww' + str(a - 1) + '_ * ' if a else ''}({weights}); "
            if padding == "zeros":
                head += f"if ({idx} < 0 || {idx} >= {d}) continue; "
            elif padding == "border":
                head += f"{idx} = H_MIN(H_MAX({idx}, 0), {d} - 1); "
            else:
                lo, hi = ("0.0f", f"(f32)({d} - 1)") if align else ("-0.5f", f"(f32){d} - 0.5f")
                head += f"{{ f32 fi_ = (f32){idx}; {_reflect('fi_', lo, hi)} {idx} = (i64)fi_; }} "
            parts.append(head)
        offset = "0"
        for a in range(r):
            offset = f"({offset}) * {dim(a)} + i{a}_"
        return "".join(parts) + f"acc_ += ({t})ww{r - 1}_ * in0[base_ + {offset}];" + " }" * r


@register
class AffineGrid(Lowering):
    ops = ("AffineGrid",)
    shape_inputs = (1,)
    dtypes = FLOATS

    def check(self, node):
        reason = super().check(node)
        if reason is None and node.out_rank(0) not in (4, 5):
            reason = "unknown rank" if node.out_rank(0) is None else f"rank {node.out_rank(0)}"
        return reason

    def infer(self, node, pc):
        size = values_of(pc, node.inputs[1])
        return [(size[0], *size[2:], len(size) - 2)]

    def kernel(self, node):
        r = node.out_rank(0) - 2
        t = ctype(node.in_dtype(0))
        align = bool(node.attr("align_corners", 0))

        def params(pc):
            out = self.infer(node, pc)[0]
            if tuple(pc.shape(node.inputs[0])) != (out[0], r, r + 1):
                raise ValueError(f"theta of shape {tuple(pc.shape(node.inputs[0]))} for {r}-D grids")
            return [numel(out), *out]

        lines = [coords(r + 2, 1)]
        terms = []
        for j in range(r):  # base coordinate j: spatial dim r-1-j (x is the innermost)
            a = r - j
            d = f"p[{1 + a}]"
            if align:
                base = f"({d} > 1 ? -1.0f + (f32)c{a} * (2.0f / (f32)({d} - 1)) : -1.0f)"
            else:
                base = f"(-1.0f + 1.0f / (f32){d} + (f32)c{a} * (2.0f / (f32){d}))"
            terms.append(f"in0[th_ + {j}] * ({t}){base}")
        terms.append(f"in0[th_ + {r}]")
        lines.append(f"const i64 th_ = (c0 * {r} + c{r + 1}) * {r + 1};")
        lines.append(f"out0[gid] = {' + '.join(terms)};")
        return Kernel([node.inputs[0]], [node.outputs[0]], 2 + r + 1, params, body=" ".join(lines), label="affinegrid")
