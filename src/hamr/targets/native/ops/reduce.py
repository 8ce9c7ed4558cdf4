"""Reductions and row-wise normalisations as map kernels.

Reduce*: one work item per output element. When planning, the input dims are coalesced
into alternating kept/reduced groups (size-1 dims dropped, neighbours of the same kind
merged); the item walks the reduced elements as an outer index over all but the last
reduced group and a strided inner loop over the last one.

Softmax, LayerNormalization and friends: one work item per row, a row being the
elements along the normalised axis (or axes) for one (outer, inner) position. When the
row is contiguous (known at compile time) the loops index it directly, and reductions
run over several partial accumulators so the compiler can vectorise them.
"""

from __future__ import annotations

import numpy as np

from hamr.ir.dtypes import FLOATS, NUMERIC, SIGNED, ctype
from hamr.targets.native.ops.base import (
    Kernel,
    Lowering,
    broadcast_strides,
    normalize_axis,
    numel,
    static_equal,
    strides_of,
)
from hamr.targets.native.ops.registry import register
from hamr.targets.native.render.template import render

LANES = 16  # partial accumulators in the contiguous row loops (one AVX-512 or two AVX2 vectors of f32)


def _static_numel(shape, unknown: int = 64) -> int:
    """A rough element count for `grain` (unknown dims count as `unknown`)."""
    if shape is None:
        return unknown
    return max(1, int(np.prod([d if isinstance(d, int) else unknown for d in shape], dtype=np.int64)))


def _int_limit(dtype: str, high: bool) -> str:
    info = np.iinfo(dtype)
    t = ctype(dtype)
    if dtype == "int64" and not high:
        return "((i64)(-9223372036854775807L - 1))"
    value = int(info.max if high else info.min)
    suffix = "UL" if dtype == "uint64" else "L"
    return f"(({t}){value}{suffix})"


def lane_reduce(out: str, init: str, acc_t: str, combine, merge, count: str, at) -> str:
    """Declares `acc_t out`: the fold of combine(acc, at(j)) over j < count, kept in LANES
    partial accumulators (so the compiler may vectorise) that `merge` joins at the end."""
    names = [f"l{k}_" for k in range(LANES)]
    steps = " ".join(f"{n} = {combine(n, at(f'j_ + {k}'))};" for k, n in enumerate(names))
    joins, step = [], 1
    while step < LANES:
        joins += [f"{names[k]} = {merge(names[k], names[k + step])};" for k in range(0, LANES, 2 * step)]
        step *= 2
    return (
        f"{acc_t} {out}; {{ {acc_t} " + ", ".join(f"{n} = {init}" for n in names) + "; "
        f"i64 j_ = 0; for (; j_ + {LANES} <= {count}; j_ += {LANES}) {{ {steps} }} "
        f"for (; j_ < {count}; j_++) l0_ = {combine('l0_', at('j_'))}; " + " ".join(joins) + f" {out} = l0_; }}"
    )


# f32 <-> i32 bit casts in both dialects (defined once, where first used)
BITCASTS = (
    "\n#ifndef H_F2I\n#ifdef H_DEVICE_DIALECT\n#define H_F2I(x) as_int(x)\n#define H_I2F(x) as_float(x)\n#else\n"
    "#define H_F2I(x) (((union { f32 f_; i32 i_; }){ .f_ = (x) }).i_)\n"
    "#define H_I2F(x) (((union { f32 f_; i32 i_; }){ .i_ = (x) }).f_)\n#endif\n#endif\n"
)
I32_MIN, I32_MAX = "(-2147483647 - 1)", "2147483647"


def f32_key(x: str, nan_key: str) -> str:
    """An i32 ordered like the f32 `x` (NaN: `nan_key`). Max/min over these keys vectorise,
    float max/min do not without -ffast-math. Needs BITCASTS."""
    b = f"H_F2I({x})"
    nan = f"(-(i32)(({b} & 0x7FFFFFFF) > 0x7F800000))"
    return f"((({b} ^ (({b} >> 31) & 0x7FFFFFFF)) & ~{nan}) | ({nan_key} & {nan}))"


def f32_of_key(k: str) -> str:
    return f"H_I2F({k} ^ (({k} >> 31) & 0x7FFFFFFF))"


# ---- Reduce* -------------------------------------------------------------------------


def _reduce_axes(node, pc, rank: int) -> list[int]:
    if node.has_input(1):
        axes = [int(a) for a in np.asarray(pc.value(node.inputs[1])).reshape(-1)]
    else:
        axes = list(node.attr("axes", None) or [])
    if not axes:
        return [] if node.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({normalize_axis(a, rank) for a in axes})


def _reduce_groups(shape, axes) -> list[tuple[bool, int, int]]:
    """(reduced, size, element stride) per coalesced group of dims."""
    groups: list[tuple[bool, int, int]] = []
    for a, (d, s) in enumerate(zip(shape, strides_of(shape))):
        if d == 1:
            continue
        red = a in axes
        if groups and groups[-1][0] == red:
            groups[-1] = (red, groups[-1][1] * int(d), s)
        else:
            groups.append((red, int(d), s))
    return groups


_SUMS = {  # op -> the term each element adds ($x: the element)
    "ReduceSum": "$x",
    "ReduceMean": "$x",
    "ReduceL1": "fabs($x)",
    "ReduceL2": "$x * $x",
    "ReduceSumSquare": "$x * $x",
    "ReduceLogSum": "$x",
}


def _add(a: str, b: str) -> str:
    return f"{a} + {b}"


class _ReduceLoop:
    """The walk over one output element's reduced inputs (see Reduce.kernel for params)."""

    def __init__(self, q: int, base: int, t: str):
        self.q, self.base, self.t = q, base, t

    def fold(self, out: str, acc_t: str, init: str, term, merge) -> str:
        """`acc_t out` = init merged with term(x) over the reduced elements x."""
        q, base = self.q, self.base
        offset = (
            f"i64 o_ = b_; {{ i64 r_ = jo_; for (int a_ = {q - 1}; a_ >= 0; a_--) {{ const i64 d_ = p[{base} + a_]; "
            f"o_ += (r_ % d_) * p[{base + q} + a_]; r_ /= d_; }} }}"
            if q
            else "const i64 o_ = b_;"
        )
        contiguous = lane_reduce(
            "c_", init, acc_t, lambda acc, x: merge(acc, term(x)), merge, "ni_", lambda j: f"in0[b_ + {j}]"
        )
        return (
            f"{acc_t} {out} = {init}; "
            f"if (no_ == 1 && si_ == 1) {{ {contiguous} {out} = c_; }} else "
            f"for (i64 jo_ = 0; jo_ < no_; jo_++) {{ {offset} "
            f"for (i64 ji_ = 0; ji_ < ni_; ji_++) {{ const {self.t} x_ = in0[o_ + ji_ * si_]; "
            f"{out} = {merge(out, term('x_'))}; }} }}"
        )


@register
class Reduce(Lowering):
    ops = tuple(_SUMS) + ("ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSumExp")
    shape_inputs = (1,)

    def check(self, node):
        dtype = node.in_dtype(0)
        allowed = NUMERIC | ({"bool"} if node.op in ("ReduceMax", "ReduceMin") else set())
        if node.op in ("ReduceLogSum", "ReduceLogSumExp"):
            allowed = FLOATS
        if dtype not in allowed:
            return f"dtype {dtype}"
        if node.in_rank(0) is None:
            return "unknown rank"
        return None

    def infer(self, node, pc):
        shape = pc.shape(node.inputs[0])
        axes = _reduce_axes(node, pc, len(shape))
        if node.attr("keepdims", 1):
            return [tuple(1 if a in axes else d for a, d in enumerate(shape))]
        return [tuple(d for a, d in enumerate(shape) if a not in axes)]

    def kernel(self, node):
        rank = max(node.in_rank(0), 1)
        q = rank - 1
        x_name, y_name = node.inputs[0], node.outputs[0]
        a = 1 + 2 * rank + 2 * q  # p[a..a+3]: outer count, inner count, inner stride, reduced count

        def params(pc):
            shape = pc.shape(x_name)
            groups = _reduce_groups(shape, _reduce_axes(node, pc, len(shape)))
            kept = [(d, s) for red, d, s in groups if not red]
            reduced = [(d, s) for red, d, s in groups if red]
            inner = reduced.pop() if reduced else (1, 0)
            kept = [(1, 0)] * (rank - len(kept)) + kept
            outer = [(1, 0)] * (q - len(reduced)) + reduced
            n_outer = numel([d for d, _ in outer])
            return (
                [numel(pc.shape(y_name))]
                + [d for d, _ in kept]
                + [s for _, s in kept]
                + [d for d, _ in outer]
                + [s for _, s in outer]
                + [n_outer, inner[0], inner[1], n_outer * inner[0]]
            )

        body = (
            f"const i64 no_ = p[{a}], ni_ = p[{a + 1}], si_ = p[{a + 2}], nr_ = p[{a + 3}]; "
            f"i64 b_ = 0; {{ i64 r_ = gid; for (int a_ = {rank - 1}; a_ >= 0; a_--) {{ const i64 d_ = p[1 + a_]; "
            f"b_ += (r_ % d_) * p[{1 + rank} + a_]; r_ /= d_; }} }} "
            + self.body(node, _ReduceLoop(q, 1 + 2 * rank, ctype(node.in_dtype(0))))
        )
        grain = max(1, _static_numel(node.in_shape(0)) // _static_numel(node.out_shape(0), 1))
        return Kernel([x_name], [y_name], a + 4, params, body=body, label=node.op.lower(), grain=grain)

    def body(self, node, loop: _ReduceLoop) -> str:
        dtype = node.in_dtype(0)
        t, y_t = ctype(dtype), ctype(node.out_dtype())
        floating = dtype in FLOATS
        if node.op in ("ReduceMax", "ReduceMin"):
            low = node.op == "ReduceMin"
            fn = "H_MIN" if low else "H_MAX"
            if t == "f32":
                nan_key = I32_MIN if low else I32_MAX
                init = "((i32)0x7F800000)" if low else "((i32)0x807FFFFFu)"  # keys of +inf, -inf
                code = loop.fold("acc", "i32", init, lambda x: f32_key(x, nan_key), lambda a, b: f"{fn}({a}, {b})")
                return BITCASTS + code + f" out0[gid] = {f32_of_key('acc')};"
            if floating:
                init = f"(({t})({'' if low else '-'}INFINITY))"
                fn = "H_MINNAN" if low else "H_MAXNAN"
            else:
                init = ("((b8)1)" if low else "((b8)0)") if dtype == "bool" else _int_limit(dtype, low)
            merge = lambda a, b: f"{fn}({a}, {b})"  # noqa: E731
            return loop.fold("acc", t, init, lambda x: x, merge) + " out0[gid] = acc;"
        acc_t = "f64" if floating else ("i64" if dtype in SIGNED else "u64")
        if node.op == "ReduceProd":
            code = loop.fold("acc", acc_t, f"(({acc_t})1)", lambda x: f"({acc_t}){x}", lambda a, b: f"{a} * {b}")
            return code + f" out0[gid] = ({y_t})acc;"
        if node.op == "ReduceLogSumExp":
            code = loop.fold(
                "mx",
                t,
                f"(({t})(-INFINITY))",
                lambda x: f"(isinf({x}) ? ({t})(-INFINITY) : {x})",
                lambda a, b: f"H_MAXNAN({a}, {b})",
            )
            code += " " + loop.fold("acc", acc_t, "0", lambda x: f"exp((f64)({x} - mx))", _add)
            return code + f" out0[gid] = ({y_t})(log(acc) + (f64)mx);"
        term = _SUMS[node.op]
        if not floating:  # integer terms wrap in the input type, as numpy's do
            term = "($x < 0 ? -$x : $x)" if node.op == "ReduceL1" else term
            term = f"(({t})({term}))"
            acc_t = t if node.op == "ReduceMean" else acc_t
        code = loop.fold("acc", acc_t, "0", lambda x: f"({acc_t})({render(term, x=x)})", _add)
        result = {"ReduceL2": "sqrt((f64)acc)", "ReduceLogSum": "log(acc)"}.get(node.op, "acc")
        if node.op == "ReduceMean":
            result = "acc / (f64)nr_" if floating else "(nr_ == 0 ? 0 : acc / nr_)"
        return code + f" out0[gid] = ({y_t})({result});"


# ---- row kernels: one work item per row along an axis ---------------------------------


def _row_dims(shape, axis: int, flatten: bool = False) -> tuple[int, int, int]:
    """(outer, row length, inner) around `axis`; `flatten` rows span every dim from axis on."""
    if flatten:
        return numel(shape[:axis]), numel(shape[axis:]), 1
    return numel(shape[:axis]), int(shape[axis]), numel(shape[axis + 1 :])


class Row:
    """Prologue and indexing of one row: `b_` its first element, `nr_` its length."""

    def __init__(self, contiguous: bool):
        self.contiguous = contiguous

    def prologue(self) -> str:
        if self.contiguous:
            return "const i64 nr_ = p[2]; const i64 b_ = gid * nr_; "
        return "const i64 in_ = p[1], nr_ = p[2]; const i64 b_ = (gid / in_) * nr_ * in_ + gid % in_; "

    def at(self, j: str) -> str:
        return f"b_ + {j}" if self.contiguous else f"b_ + ({j}) * in_"

    def loop(self, stmt) -> str:
        """`for j < nr_` running stmt(index of element j)."""
        return f"for (i64 j_ = 0; j_ < nr_; j_++) {{ {stmt(self.at('j_'))} }} "

    def reduce(self, out: str, init: str, acc_t: str, term, merge) -> str:
        """Declares `acc_t out`, merging term(element index) over the row."""
        return lane_reduce(out, init, acc_t, lambda a, j: merge(a, term(j)), merge, "nr_", self.at) + " "

    @staticmethod
    def params(outer: int, n: int, inner: int) -> list[int]:
        return [outer * inner, inner, n]


def _max(a: str, b: str) -> str:
    return f"H_MAXNAN({a}, {b})"


def _argbest(row: Row, t: str, floating: bool, smaller: bool, last: bool) -> str:
    """Declares `bi_`: the index of the row's max (min) element, numpy's NaN rules."""
    op = "<" if smaller else ">"
    if floating:
        if last:
            cond = f"x_ != x_ || (best_ == best_ && x_ {op}= best_)"
        else:
            cond = f"best_ == best_ && (x_ {op} best_ || x_ != x_)"
    else:
        cond = f"x_ {op}= best_" if last else f"x_ {op} best_"
    return (
        f"i64 bi_ = 0; if (nr_ > 0) {{ {t} best_ = in0[b_]; for (i64 j_ = 1; j_ < nr_; j_++) {{ "
        f"const {t} x_ = in0[{row.at('j_')}]; if ({cond}) {{ best_ = x_; bi_ = j_; }} }} }} "
    )


class RowLowering(Lowering):
    """A kernel over rows along one static axis of input 0; output 0 has input 0's shape."""

    default_axis = -1

    def check(self, node):
        if node.in_dtype(0) not in self.dtypes:
            return f"dtype {node.in_dtype(0)}"
        if not node.in_rank(0):
            return "unknown rank" if node.in_rank(0) is None else "rank 0"
        return None

    def flatten(self, node) -> bool:
        return False

    def axis(self, node, rank: int) -> int:
        return normalize_axis(node.attr("axis", self.default_axis), rank)

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        rank = node.in_rank(0)
        axis, flatten = self.axis(node, rank), self.flatten(node)
        row = Row(flatten or axis == rank - 1)
        x_name = node.inputs[0]

        def params(pc):
            return Row.params(*_row_dims(pc.shape(x_name), axis, flatten))

        n = _static_numel(node.in_shape(0)[axis:] if flatten else node.in_shape(0)[axis : axis + 1])
        body = row.prologue() + self.body(node, row, ctype(node.in_dtype(0)))
        return Kernel([x_name], [node.outputs[0]], 3, params, body=body, label=node.op.lower(), grain=3 * n)


@register
class ArgMaxMin(RowLowering):
    ops = ("ArgMax", "ArgMin")
    dtypes = NUMERIC
    default_axis = 0

    def infer(self, node, pc):
        shape = list(pc.shape(node.inputs[0]))
        axis = self.axis(node, len(shape))
        if node.attr("keepdims", 1):
            shape[axis] = 1
        else:
            del shape[axis]
        return [tuple(shape)]

    def kernel(self, node):
        kernel = super().kernel(node)
        kernel.grain //= 3
        return kernel

    def body(self, node, row, t):
        last = bool(node.attr("select_last_index", 0))
        return _argbest(row, t, node.in_dtype(0) in FLOATS, node.op == "ArgMin", last) + "out0[gid] = bi_;"


class SoftmaxLike(RowLowering):
    dtypes = FLOATS

    def flatten(self, node):
        return node.opset < 13

    def axis(self, node, rank):
        return normalize_axis(node.attr("axis", -1 if node.opset >= 13 else 1), rank)


def _exp_row(row: Row, t: str) -> str:
    """m_ = the row max; out0 = exp(in0 - m_)."""
    if t == "f32":
        row_max = f"i32 mk_ = {I32_MIN}; " + row.loop(lambda at: f"mk_ = H_MAX(mk_, {f32_key(f'in0[{at}]', I32_MAX)});")
        return (
            BITCASTS
            + row_max
            + f"const f32 m_ = {f32_of_key('mk_')}; "
            + row.loop(lambda at: f"out0[{at}] = H_EXP(in0[{at}] - m_);")
        )
    return row.reduce("m_", f"(({t})(-INFINITY))", t, lambda j: f"in0[{j}]", _max) + row.loop(
        lambda at: f"out0[{at}] = exp(in0[{at}] - m_);"
    )


@register
class Softmax(SoftmaxLike):
    ops = ("Softmax",)

    def body(self, node, row, t):
        return (
            _exp_row(row, t)
            + row.reduce("s_", f"(({t})0)", t, lambda j: f"out0[{j}]", _add)
            + f"const {t} r_ = ({t})1 / s_; "
            + row.loop(lambda at: f"out0[{at}] *= r_;")
        )


@register
class LogSoftmax(SoftmaxLike):
    ops = ("LogSoftmax",)

    def body(self, node, row, t):
        return (
            _exp_row(row, t)
            + row.reduce("s_", f"(({t})0)", t, lambda j: f"out0[{j}]", _add)
            + f"const {t} ls_ = log(s_); "
            + row.loop(lambda at: f"out0[{at}] = (in0[{at}] - m_) - ls_;")
        )


@register
class Hardmax(SoftmaxLike):
    ops = ("Hardmax",)

    def body(self, node, row, t):
        return _argbest(row, t, True, False, False) + row.loop(lambda at: f"out0[{at}] = ({t})(j_ == bi_);")


@register
class LpNormalization(RowLowering):
    ops = ("LpNormalization",)
    dtypes = FLOATS

    def check(self, node):
        if node.attr("p", 2) not in (1, 2):
            return f"p={node.attr('p', 2)}"
        return super().check(node)

    def body(self, node, row, t):
        if node.attr("p", 2) == 1:
            norm = row.reduce("nm_", f"(({t})0)", t, lambda j: f"fabs(in0[{j}])", _add)
        else:
            norm = row.reduce("ss_", f"(({t})0)", t, lambda j: f"in0[{j}] * in0[{j}]", _add)
            norm += f"const {t} nm_ = sqrt(ss_); "
        return norm + row.loop(lambda at: f"out0[{at}] = nm_ == 0 ? ({t})0 : in0[{at}] / nm_;")


@register
class CumSum(Lowering):
    """CumSum and CumProd: one work item per row, running the sum (product) along it."""

    ops = ("CumSum", "CumProd")
    shape_inputs = (1,)
    dtypes = NUMERIC

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        x_name = node.inputs[0]
        t = ctype(node.in_dtype(0))

        def params(pc):
            shape = pc.shape(x_name)
            axis = normalize_axis(int(np.asarray(pc.value(node.inputs[1])).reshape(-1)[0]), len(shape))
            return Row.params(*_row_dims(shape, axis))

        row = Row(False)
        j = "nr_ - 1 - k_" if node.attr("reverse", 0) else "k_"
        op, init = ("*=", 1) if node.op == "CumProd" else ("+=", 0)
        step = (
            f"out0[o_] = acc_; acc_ {op} in0[o_];"
            if node.attr("exclusive", 0)
            else f"acc_ {op} in0[o_]; out0[o_] = acc_;"
        )
        body = (
            row.prologue()
            + f"{t} acc_ = ({t}){init}; for (i64 k_ = 0; k_ < nr_; k_++) {{ const i64 o_ = {row.at(j)}; {step} }}"
        )
        return Kernel([x_name], [node.outputs[0]], 3, params, body=body, label=node.op.lower(), grain=16)


def _affine_index(node, i: int, norm_shape, pbase: int) -> tuple[str, str, int, object]:
    """How row element j_ reads input i (broadcast over the normalised dims): statements
    that run first, the C index, the number of params it takes from p[pbase] on, and a
    function (pc, normalised shape) -> those params."""
    shape = node.in_shape(i)
    nr = len(norm_shape)
    if static_equal(shape, norm_shape):
        return "", "j_", 0, lambda pc, norm: []
    if shape is not None and all(d == 1 for d in shape):
        return "", "0", 0, lambda pc, norm: []
    name, var = node.inputs[i], f"o{i}_"

    def params(pc, norm):
        own = tuple(pc.shape(name))
        own = own[len(own) - nr :] if len(own) > nr else own
        return list(norm) + broadcast_strides(own, norm)

    code = (
        f"i64 {var} = 0; {{ i64 r_ = j_; for (int a_ = {nr - 1}; a_ >= 0; a_--) {{ const i64 d_ = p[{pbase} + a_]; "
        f"{var} += (r_ % d_) * p[{pbase + nr} + a_]; r_ /= d_; }} }} "
    )
    return code, var, 2 * nr, params


@register
class LayerNormalization(Lowering):
    ops = ("LayerNormalization",)
    dtypes = FLOATS

    def check(self, node):
        if node.in_dtype(0) not in FLOATS or node.in_dtype(1) != node.in_dtype(0):
            return f"dtype {node.in_dtype(0)}"
        if node.has_input(2) and node.in_dtype(2) != node.in_dtype(0):
            return f"dtype {node.in_dtype(2)}"
        if node.in_rank(0) is None:
            return "unknown rank"
        if any(not name for name in node.outputs):
            return "skipped optional output"
        if any(node.out_dtype(k) not in FLOATS for k in range(1, len(node.outputs))):
            return f"dtype {node.out_dtype(1)}"
        return None

    def infer(self, node, pc):
        shape = pc.shape(node.inputs[0])
        axis = normalize_axis(node.attr("axis", -1), len(shape))
        stat = tuple(shape[:axis]) + (1,) * (len(shape) - axis)
        return [shape] + [stat] * (len(node.outputs) - 1)

    @staticmethod
    def normalised(node):
        """(the first normalised axis, the normalised shape, the input's name, its C type)."""
        axis = normalize_axis(node.attr("axis", -1), node.in_rank(0))
        return axis, node.in_shape(0)[axis:], node.inputs[0], ctype(node.in_dtype(0))

    def kernel(self, node):
        axis, norm_shape, x_name, t = self.normalised(node)
        inputs = [name for name in node.inputs[:3] if name]
        pre1, scale, n1, p1 = _affine_index(node, 1, norm_shape, 2)
        pre2, bias, n2, p2 = _affine_index(node, 2, norm_shape, 2 + n1) if len(inputs) == 3 else ("", "", 0, None)

        def params(pc):
            shape = pc.shape(x_name)
            norm = shape[axis:]
            out = [numel(shape[:axis]), numel(norm)] + p1(pc, norm)
            return out + (p2(pc, norm) if p2 else [])

        row = Row(True)
        y = f"(x_ - mu_) * rs_ * in1[{scale}]" + (f" + in2[{bias}]" if bias else "")
        eps = float(node.attr("epsilon", 1e-5))
        body = (
            "const i64 nr_ = p[1]; const i64 b_ = gid * nr_; "
            + row.reduce("s1_", f"(({t})0)", t, lambda j: f"in0[{j}]", _add)
            + f"const {t} mu_ = s1_ / ({t})nr_; "
            + row.reduce("s2_", f"(({t})0)", t, lambda j: f"(in0[{j}] - mu_) * (in0[{j}] - mu_)", _add)
            + f"const {t} rs_ = ({t})1 / sqrt(s2_ / ({t})nr_ + ({t}){eps!r}); "
            + row.loop(lambda at: f"{pre1}{pre2}const {t} x_ = in0[{at}]; out0[{at}] = {y};")
        )
        stats = ["mu_", "rs_"]
        for k in range(1, len(node.outputs)):
            body += f"out{k}[gid] = ({ctype(node.out_dtype(k))}){stats[k - 1]}; "
        grain = 3 * _static_numel(norm_shape)
        return Kernel(inputs, list(node.outputs), 2 + n1 + n2, params, body=body, label="layernorm", grain=grain)


@register
class RMSNormalization(LayerNormalization):
    """y = x / sqrt(mean(x^2 over the axes from `axis` on) + epsilon) * scale."""

    ops = ("RMSNormalization",)

    def check(self, node):
        if node.attr("stash_type", 1) != 1:
            return f"stash_type {node.attr('stash_type')}"
        return super().check(node)

    def kernel(self, node):
        axis, norm_shape, x_name, t = self.normalised(node)
        pre, scale, n_scale, scale_params = _affine_index(node, 1, norm_shape, 2)

        def params(pc):
            shape = pc.shape(x_name)
            return [numel(shape[:axis]), numel(shape[axis:])] + scale_params(pc, shape[axis:])

        row = Row(True)
        eps = float(node.attr("epsilon", 1e-5))
        body = (
            "const i64 nr_ = p[1]; const i64 b_ = gid * nr_; "
            + row.reduce("s2_", f"(({t})0)", t, lambda j: f"in0[{j}] * in0[{j}]", _add)
            + f"const {t} rs_ = ({t})1 / sqrt(s2_ / ({t})nr_ + ({t}){eps!r}); "
            + row.loop(lambda at: f"{pre}out0[{at}] = in0[{at}] * rs_ * in1[{scale}];")
        )
        grain = 2 * _static_numel(norm_shape)
        inputs = list(node.inputs[:2])
        return Kernel(inputs, [node.outputs[0]], 2 + n_scale, params, body=body, label="rmsnorm", grain=grain)


@register
class InstanceNormalization(Lowering):
    ops = ("InstanceNormalization",)
    dtypes = FLOATS

    def check(self, node):
        if any(node.in_dtype(i) != node.in_dtype(0) for i in range(3)) or node.in_dtype(0) not in FLOATS:
            return f"dtype {node.in_dtype(0)}"
        if node.in_rank(0) is None or node.in_rank(0) < 2:
            return "rank"
        return None

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        x_name = node.inputs[0]
        t = ctype(node.in_dtype(0))

        def params(pc):
            shape = pc.shape(x_name)
            return [numel(shape[:2]), int(shape[1]), numel(shape[2:])]

        row = Row(True)
        eps = float(node.attr("epsilon", 1e-5))
        body = (
            "const i64 nr_ = p[2]; const i64 b_ = gid * nr_; const i64 c_ = gid % p[1]; "
            + row.reduce("s1_", f"(({t})0)", t, lambda j: f"in0[{j}]", _add)
            + f"const {t} mu_ = s1_ / ({t})nr_; "
            + row.reduce("s2_", f"(({t})0)", t, lambda j: f"(in0[{j}] - mu_) * (in0[{j}] - mu_)", _add)
            + f"const {t} sd_ = sqrt(s2_ / ({t})nr_ + ({t}){eps!r}); "
            + row.loop(lambda at: f"out0[{at}] = in1[c_] * (in0[{at}] - mu_) / sd_ + in2[c_];")
        )
        grain = 3 * _static_numel(node.in_shape(0)[2:])
        return Kernel(list(node.inputs[:3]), [node.outputs[0]], 3, params, body=body, label="instancenorm", grain=grain)
