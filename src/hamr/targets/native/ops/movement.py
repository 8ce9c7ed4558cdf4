"""Data movement: transpose, slice, concat, gather, pad, scatter and friends.

Almost all are map kernels with one work item per output element: the item splits
`gid` into output coordinates (unrolled over the static rank, sizes from parameters)
and computes where its value comes from. Scatters copy the data and then apply the
updates, in one custom kernel with a barrier between the two phases.
"""

from __future__ import annotations

import math

from hamr.ir.dtypes import CTYPES, FLOATS, NUMERIC, STORAGE, buffer_ctype, ctype
from hamr.targets.native.ops.base import (
    Kernel,
    Lowering,
    RowLoop,
    Source,
    broadcast_shapes,
    broadcast_strides,
    normalize_axis,
    numel,
    strides_of,
)
from hamr.targets.native.ops.elementwise import lit
from hamr.targets.native.ops.registry import register
from hamr.targets.native.ops.strided_copy import STRIDED_DIALECTS, strided_kernel
from hamr.targets.native.render.template import render

INDEX_DTYPES = frozenset({"int32", "int64"})


# ---- code generation helpers ----------------------------------------------------------


def coords(rank: int, dims_at: int, index: str = "gid") -> str:
    """Statements declaring `const i64 c0..c{rank-1}`: `index` split over dims p[dims_at...]."""
    if rank == 0:
        return ""
    parts = [f"i64 r_ = {index};"]
    for a in range(rank - 1, 0, -1):
        parts.append(f"const i64 c{a} = r_ % p[{dims_at + a}]; r_ /= p[{dims_at + a}];")
    parts.append("const i64 c0 = r_;")
    return " ".join(parts)


def dot(terms: list[str], strides_at: int) -> str:
    """sum(terms[a] * p[strides_at + a]) as a C expression."""
    return " + ".join([f"{t} * p[{strides_at + a}]" for a, t in enumerate(terms)]) or "0"


def split3(dims_at: int, at: str = "gid") -> str:
    """o_, a_, i_: `at` split over (outer, p[dims_at], p[dims_at + 1]) (axis size, inner size)."""
    return (
        f"const i64 A_ = p[{dims_at}], inner_ = p[{dims_at + 1}]; const i64 i_ = {at} % inner_, "
        f"a_ = ({at} / inner_) % A_, o_ = {at} / (inner_ * A_);"
    )


def literal(value, dtype: str) -> str:
    t = ctype(dtype)
    if dtype in FLOATS:
        return lit(float(value), t)
    if dtype == "bool":
        return f"(({t}){int(bool(value))})"
    value = int(value)
    if value < -(2**63 - 1):
        return f"(({t})(-{2**63 - 1} - 1))"
    return f"(({t}){hex(value) if value > 2**63 - 1 else value})"


def values_of(pc, name: str) -> list[int]:
    return [int(v) for v in pc.value(name).reshape(-1)]


def around(shape, axis: int) -> tuple[int, int, int]:
    """(outer, axis size, inner) of `shape` around `axis`."""
    return numel(shape[:axis]), int(shape[axis]), numel(shape[axis + 1 :])


class Movement(Lowering):
    dtypes = frozenset(CTYPES) | frozenset(STORAGE)  # copies move a storage type's bits unchanged
    min_rank = 0
    same_rank = True  # output 0 has input 0's rank, which it tells when the input's is unknown

    def data_rank(self, node) -> int | None:
        rank = node.in_rank(0)
        return node.out_rank(0) if rank is None and self.same_rank else rank

    def check(self, node):
        reason = super().check(node)
        if reason is None:
            rank = self.data_rank(node)
            if rank is None:
                reason = "unknown rank"
            elif rank < self.min_rank:
                reason = f"rank {rank}"
        return reason or self.check_more(node)

    def check_more(self, node):
        return None

    def out_type(self, node) -> str:
        return ctype(node.out_dtype(0))


def indices_check(node, i: int) -> str | None:
    return None if node.in_dtype(i) in INDEX_DTYPES else f"indices dtype {node.in_dtype(i)}"


# ---- strided copies: out[c] = in0[base + sum(c[a] * mult[a])] -------------------------


class Strided(Movement):
    """Transpose, Slice, Expand, DepthToSpace, SpaceToDepth: a strided view copied out.

    `layout` gives the iteration dims (whose row-major order is the output's), the base
    offset and one element stride per iteration axis.
    """

    def rank(self, node) -> int:
        return self.data_rank(node)

    def layout(self, node, pc) -> tuple[list[int], int, list[int]]:
        raise NotImplementedError

    def infer(self, node, pc):
        return [tuple(self.layout(node, pc)[0])]

    def dialects(self, node):
        return STRIDED_DIALECTS

    def kernel(self, node):
        return strided_kernel(node, self.rank(node), lambda pc: self.layout(node, pc), node.op.lower())


def permuted(view, perm) -> tuple[list[int], int, list[int]]:
    strides = strides_of(view)
    return [int(view[a]) for a in perm], 0, [strides[a] for a in perm]


@register
class Transpose(Strided):
    ops = ("Transpose",)

    def data_rank(self, node):
        perm = node.attr("perm")
        return len(perm) if perm else super().data_rank(node)

    def layout(self, node, pc):
        shape = pc.shape(node.inputs[0])
        perm = node.attr("perm") or list(range(len(shape)))[::-1]
        return permuted(shape, perm)


@register
class Slice(Strided):
    ops = ("Slice",)
    shape_inputs = (1, 2, 3, 4)

    def arguments(self, node, pc):
        if node.opset < 10:
            starts, ends = node.attr("starts"), node.attr("ends")
            axes, steps = node.attr("axes"), None
        else:
            starts, ends = values_of(pc, node.inputs[1]), values_of(pc, node.inputs[2])
            axes = values_of(pc, node.inputs[3]) if node.has_input(3) else None
            steps = values_of(pc, node.inputs[4]) if node.has_input(4) else None
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        return zip(starts, ends, axes, steps)

    def layout(self, node, pc):
        shape = pc.shape(node.inputs[0])
        dims, start, step = list(shape), [0] * len(shape), [1] * len(shape)
        for s, e, axis, st in self.arguments(node, pc):
            axis = normalize_axis(int(axis), len(shape))
            picked = range(shape[axis])[slice(int(s), int(e), int(st))]  # numpy's clamping
            dims[axis], start[axis], step[axis] = len(picked), picked.start, picked.step
        strides = strides_of(shape)
        base = sum(b * s for b, s in zip(start, strides))
        return dims, base, [st * s for st, s in zip(step, strides)]


@register
class Expand(Strided):
    ops = ("Expand",)
    shape_inputs = (1,)

    def data_rank(self, node):
        return node.out_rank(0)

    def layout(self, node, pc):
        shape = pc.shape(node.inputs[0])
        out = broadcast_shapes(shape, tuple(values_of(pc, node.inputs[1])))
        return list(out), 0, broadcast_strides(shape, out)


class BlockShuffle(Strided):
    min_rank = 4

    def check_more(self, node):
        if self.data_rank(node) != 4:
            return f"rank {self.data_rank(node)}"
        return None if node.attr("mode", "DCR") in ("DCR", "CRD") else "mode"

    def rank(self, node):
        return 6


@register
class DepthToSpace(BlockShuffle):
    ops = ("DepthToSpace",)

    def infer(self, node, pc):
        n, c, h, w = pc.shape(node.inputs[0])
        b = node.attr("blocksize")
        return [(n, c // (b * b), h * b, w * b)]

    def layout(self, node, pc):
        n, c, h, w = pc.shape(node.inputs[0])
        b = node.attr("blocksize")
        if node.attr("mode", "DCR") == "DCR":
            return permuted((n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2))
        return permuted((n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3))


@register
class SpaceToDepth(BlockShuffle):
    ops = ("SpaceToDepth",)

    def infer(self, node, pc):
        n, c, h, w = pc.shape(node.inputs[0])
        b = node.attr("blocksize")
        return [(n, c * b * b, h // b, w // b)]

    def layout(self, node, pc):
        n, c, h, w = pc.shape(node.inputs[0])
        b = node.attr("blocksize")
        view = (n, c, h // b, b, w // b, b)
        return permuted(view, (0, 3, 5, 1, 2, 4) if node.attr("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4))


# ---- concat / split -------------------------------------------------------------------


def blocks_params(shape, axis: int, sizes: list[int], n: int) -> list[int]:
    """[n, axis size, inner, sizes..., starts...] for a concat/split along `axis`."""
    starts = [sum(sizes[:j]) for j in range(len(sizes))]
    return [n, int(shape[axis]), numel(shape[axis + 1 :]), *sizes, *starts]


def blocks_branches(k: int, stmt) -> str:
    """if/else chain choosing block j (of k) that holds axis coordinate a_; stmt(j, local a)."""
    parts = []
    for j in range(k):
        size, start = f"p[{3 + j}]", f"p[{3 + k + j}]"
        cond = f"a_ < {start} + {size}"
        parts.append(f"if ({cond}) {{ {stmt(j, f'(o_ * {size} + a_ - {start}) * inner_ + i_')} }}")
    return " else ".join(parts)


@register
class Concat(Movement):
    ops = ("Concat",)

    def check_more(self, node):
        if any(node.in_dtype(i) != node.in_dtype(0) for i in range(len(node.inputs))):
            return "mixed dtypes"
        return None

    def axis(self, node, rank: int) -> int:
        return normalize_axis(node.attr("axis", 1), rank)

    def infer(self, node, pc):
        shapes = [pc.shape(name) for name in node.inputs]
        axis = self.axis(node, len(shapes[0]))
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return [tuple(out)]

    def kernel(self, node):
        axis, k, out = self.axis(node, self.data_rank(node)), len(node.inputs), node.outputs[0]

        def params(pc):
            sizes = [int(pc.shape(name)[axis]) for name in node.inputs]
            return blocks_params(pc.shape(out), axis, sizes, numel(pc.shape(out)))

        body = split3(1) + " " + blocks_branches(k, lambda j, at: f"out0[gid] = in{j}[{at}];")
        t = buffer_ctype(node.in_dtype(0))
        setup = f"{split3(1, 'g_')} const {t} *s_ = in0; " + blocks_branches(k, lambda j, at: f"s_ = in{j} + {at};")
        copy = "out0[gid] = s_[gid - g_];"
        rows = RowLoop(length=2, setup=setup, body=copy, fast_when="1", fast_setup="", fast_body=copy)
        return Kernel(list(node.inputs), [out], 3 + 2 * k, params, body=body, rows=rows, label="concat")


@register
class Split(Movement):
    ops = ("Split",)
    shape_inputs = (1,)

    def axis(self, node, rank: int) -> int:
        return normalize_axis(node.attr("axis", 0), rank)

    def sizes(self, node, pc) -> list[int]:
        shape = pc.shape(node.inputs[0])
        dim, count = shape[self.axis(node, len(shape))], len(node.outputs)
        if node.has_input(1):
            return values_of(pc, node.inputs[1])
        if node.attr("split") is not None:
            return [int(s) for s in node.attr("split")]
        if node.attr("num_outputs") is not None:
            chunk = -(-dim // count)
            return [chunk] * (count - 1) + [dim - chunk * (count - 1)]
        return [dim // count] * count

    def infer(self, node, pc):
        shape = pc.shape(node.inputs[0])
        axis = self.axis(node, len(shape))
        return [shape[:axis] + (s,) + shape[axis + 1 :] for s in self.sizes(node, pc)]

    def kernel(self, node):
        src, k = node.inputs[0], len(node.outputs)
        axis = self.axis(node, self.data_rank(node))

        def params(pc):
            return blocks_params(pc.shape(src), axis, self.sizes(node, pc), numel(pc.shape(src)))

        body = split3(1) + " " + blocks_branches(k, lambda j, at: f"out{j}[{at}] = in0[gid];")
        return Kernel([src], list(node.outputs), 3 + 2 * k, params, body=body, label="split")


# ---- gathers ------------------------------------------------------------------------------


@register
class Gather(Movement):
    ops = ("Gather",)
    same_rank = False

    def check_more(self, node):
        return indices_check(node, 1)

    def infer(self, node, pc):
        shape = pc.shape(node.inputs[0])
        axis = normalize_axis(node.attr("axis", 0), len(shape))
        return [shape[:axis] + pc.shape(node.inputs[1]) + shape[axis + 1 :]]

    def kernel(self, node):
        data, indices = node.inputs[0], node.inputs[1]
        axis = normalize_axis(node.attr("axis", 0), node.in_rank(0))

        def params(pc):
            outer, k, inner = around(pc.shape(data), axis)
            count = numel(pc.shape(indices))
            return [outer * count * inner, count, inner, k]

        body = (
            f"{split3(1)} const i64 K_ = p[3]; i64 x_ = (i64)in1[a_]; if (x_ < 0) x_ += K_; "
            f"out0[gid] = (x_ >= 0 && x_ < K_) ? in0[(o_ * K_ + x_) * inner_ + i_] : ({self.out_type(node)})0;"
        )
        # rows of `inner` elements: the index read and checked once per row, then one contiguous copy
        setup = (
            f"{split3(1, 'g_')} const i64 K_ = p[3]; i64 x_ = (i64)in1[a_]; if (x_ < 0) x_ += K_; "
            "const int in_ = x_ >= 0 && x_ < K_; const i64 s_ = in_ ? (o_ * K_ + x_) * inner_ + i_ - g_ : 0;"
        )
        copy = "out0[gid] = in0[s_ + gid];"
        zero = f"out0[gid] = ({self.out_type(node)})0;"
        rows = RowLoop(2, setup, zero, "in_", "", copy)
        return Kernel([data, indices], [node.outputs[0]], 4, params, body=body, rows=rows, label="gather")


@register
class GatherElements(Movement):
    ops = ("GatherElements",)

    def check_more(self, node):
        return indices_check(node, 1)

    def infer(self, node, pc):
        return [pc.shape(node.inputs[1])]

    def kernel(self, node):
        data, indices = node.inputs[0], node.inputs[1]
        rank = self.data_rank(node)
        axis = normalize_axis(node.attr("axis", 0), rank)

        def params(pc):
            shape = pc.shape(data)
            out = pc.shape(indices)
            return [numel(out), *out, *strides_of(shape), int(shape[axis])]

        terms = [f"c{a}" if a != axis else "x_" for a in range(rank)]
        k = f"p[{1 + 2 * rank}]"
        body = (
            f"{coords(rank, 1)} i64 x_ = (i64)in1[gid]; if (x_ < 0) x_ += {k}; "
            f"out0[gid] = (x_ >= 0 && x_ < {k}) ? in0[{dot(terms, 1 + rank)}] : ({self.out_type(node)})0;"
        )
        return Kernel([data, indices], [node.outputs[0]], 2 + 2 * rank, params, body=body, label="gather_elements")


def nd_offset(rank: int, tuple_at: str, at: int) -> str:
    """Statements adding to `o_` the offset of the index tuple in1[tuple_at...] (kk_ entries) over
    the data dims p[at + b...] and strides p[at + rank + b...]; ok_ says all were in range."""
    return (
        f"int ok_ = 1; for (i64 k_ = 0; k_ < kk_; k_++) {{ i64 x_ = (i64)in1[{tuple_at} + k_]; "
        f"const i64 d_ = p[{at} + k_]; if (x_ < 0) x_ += d_; ok_ = ok_ && x_ >= 0 && x_ < d_; "
        f"o_ += x_ * p[{at + rank} + k_]; }}"
    )


@register
class GatherND(Movement):
    ops = ("GatherND",)
    same_rank = False

    def check_more(self, node):
        shape = node.in_shape(1)
        if shape is None or not shape or not isinstance(shape[-1], int):
            return "index tuple length not static"
        return indices_check(node, 1)

    def infer(self, node, pc):
        data, indices = pc.shape(node.inputs[0]), pc.shape(node.inputs[1])
        return [indices[:-1] + data[node.attr("batch_dims", 0) + indices[-1] :]]

    def kernel(self, node):
        data, indices = node.inputs[0], node.inputs[1]
        b, rank = node.attr("batch_dims", 0), node.in_rank(0)

        def params(pc):
            shape, ishape = pc.shape(data), pc.shape(indices)
            kk = ishape[-1]
            inner = numel(shape[b + kk :])
            tuples = numel(ishape[b:-1])
            return [
                numel(ishape[:-1]) * inner,
                tuples,
                inner,
                kk,
                numel(shape[b:]),
                *shape[b:],
                *([0] * b),
                *strides_of(shape)[b:],
                *([0] * b),
            ]

        body = (
            "const i64 J_ = p[1], inner_ = p[2], kk_ = p[3]; const i64 t_ = gid / inner_; "
            "i64 o_ = (t_ / J_) * p[4] + gid % inner_; "
            + nd_offset(rank, "t_ * kk_", 5)
            + f" out0[gid] = ok_ ? in0[o_] : ({self.out_type(node)})0;"
        )
        return Kernel([data, indices], [node.outputs[0]], 5 + 2 * rank, params, body=body, label="gather_nd", grain=4)


# ---- tiling, padding, sequences ------------------------------------------------------------


@register
class Tile(Movement):
    ops = ("Tile",)
    shape_inputs = (1,)

    def infer(self, node, pc):
        shape = pc.shape(node.inputs[0])
        return [tuple(d * r for d, r in zip(shape, values_of(pc, node.inputs[1])))]

    def kernel(self, node):
        src, rank = node.inputs[0], self.data_rank(node)

        def params(pc):
            shape = pc.shape(src)
            out = self.infer(node, pc)[0]
            return [numel(out), *out, *shape, *strides_of(shape)]

        terms = [f"(c{a} % p[{1 + rank + a}])" for a in range(rank)]
        body = f"{coords(rank, 1)} out0[gid] = in0[{dot(terms, 1 + 2 * rank)}];"
        return Kernel([src], [node.outputs[0]], 1 + 3 * rank, params, body=body, label="tile")


PAD_MODES = ("constant", "reflect", "edge", "wrap")


@register
class Pad(Movement):
    ops = ("Pad",)
    shape_inputs = (1, 3)

    def check_more(self, node):
        if node.opset < 11 and node.in_dtype(0) in STORAGE:
            return f"dtype {node.in_dtype(0)} with a constant attribute"
        return None if self.mode(node) in PAD_MODES else f"mode {self.mode(node)}"

    def mode(self, node) -> str:
        mode = node.attr("mode", "constant")
        return mode.decode() if isinstance(mode, bytes) else mode

    def pads(self, node, pc) -> tuple[list[int], list[int]]:
        rank = len(pc.shape(node.inputs[0]))
        if node.opset < 11:
            pads = [int(v) for v in node.attr("pads", node.attr("paddings"))]
        else:
            pads = values_of(pc, node.inputs[1])
        axes = values_of(pc, node.inputs[3]) if node.has_input(3) else list(range(len(pads) // 2))
        begin, end = [0] * rank, [0] * rank
        for j, axis in enumerate(axes):
            axis = normalize_axis(axis, rank)
            begin[axis], end[axis] = pads[j], pads[j + len(axes)]
        return begin, end

    def infer(self, node, pc):
        begin, end = self.pads(node, pc)
        return [tuple(d + b + e for d, b, e in zip(pc.shape(node.inputs[0]), begin, end))]

    def fill(self, node) -> str:
        if node.opset >= 11:
            return "in1[0]" if node.has_input(2) else f"({self.out_type(node)})0"
        return literal(node.attr("value", 0.0), node.out_dtype(0))

    def kernel(self, node):
        src, rank, mode = node.inputs[0], self.data_rank(node), self.mode(node)
        inputs = [src] + ([node.inputs[2]] if mode == "constant" and node.opset >= 11 and node.has_input(2) else [])

        def params(pc):
            shape = pc.shape(src)
            out = self.infer(node, pc)[0]
            if mode != "constant" and numel(out) and not numel(shape):
                raise ValueError(f"{mode} padding of an empty tensor")
            return [numel(out), *out, *self.pads(node, pc)[0], *shape, *strides_of(shape)]

        lines = [coords(rank, 1), "int ok_ = 1;" if mode == "constant" else ""]
        for a in range(rank):
            s, d = f"s{a}", f"p[{1 + 2 * rank + a}]"
            lines.append(f"i64 {s} = c{a} - p[{1 + rank + a}];")
            if mode == "constant":
                lines.append(f"ok_ = ok_ && {s} >= 0 && {s} < {d};")
            elif mode == "edge":
                lines.append(f"{s} = {s} < 0 ? 0 : ({s} >= {d} ? {d} - 1 : {s});")
            elif mode == "wrap":
                lines.append(f"{s} = (({s} % {d}) + {d}) % {d};")
            else:  # reflect: period 2(d-1), mirrored in its second half
                lines.append(
                    f"if ({d} > 1) {{ const i64 q_ = 2 * ({d} - 1); {s} = (({s} % q_) + q_) % q_; "
                    f"if ({s} >= {d}) {s} = q_ - {s}; }} else {s} = 0;"
                )
        offset = dot([f"s{a}" for a in range(rank)], 1 + 3 * rank)
        value = f"in0[{offset}]"
        if mode == "constant":
            value = f"ok_ ? {value} : {self.fill(node)}"
        lines.append(f"out0[gid] = {value};")
        return Kernel(inputs, [node.outputs[0]], 1 + 4 * rank, params, body=" ".join(lines), label="pad", grain=2)


@register
class ReverseSequence(Movement):
    ops = ("ReverseSequence",)
    min_rank = 2

    def check_more(self, node):
        return indices_check(node, 1)

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        src, rank = node.inputs[0], self.data_rank(node)
        batch = normalize_axis(node.attr("batch_axis", 1), rank)
        time = normalize_axis(node.attr("time_axis", 0), rank)

        def params(pc):
            shape = pc.shape(src)
            return [numel(shape), *shape, strides_of(shape)[time]]

        body = (
            f"{coords(rank, 1)} const i64 L_ = (i64)in1[c{batch}]; "
            f"const i64 t_ = c{time} < L_ ? L_ - 1 - c{time} : c{time}; "
            f"out0[gid] = in0[gid + (t_ - c{time}) * p[{1 + rank}]];"
        )
        return Kernel([src, node.inputs[1]], [node.outputs[0]], 2 + rank, params, body=body, label="reverse_sequence")


@register
class Trilu(Movement):
    ops = ("Trilu",)
    min_rank = 2

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        src = node.inputs[0]

        def params(pc):
            shape = pc.shape(src)
            return [numel(shape), shape[-2], shape[-1]]

        k = "(i64)in1[0]" if node.has_input(1) else "0"
        keep = ">=" if node.attr("upper", 1) else "<="
        body = (
            "const i64 j_ = gid % p[2], i_ = (gid / p[2]) % p[1]; "
            f"out0[gid] = (j_ - i_ {keep} {k}) ? in0[gid] : ({self.out_type(node)})0;"
        )
        inputs = [src] + ([node.inputs[1]] if node.has_input(1) else [])
        return Kernel(inputs, [node.outputs[0]], 3, params, body=body, inplace=[(0, 0)], label="trilu")


# ---- generators -------------------------------------------------------------------------------


class Generator(Lowering):
    """Ops whose output is computed from shapes and attributes; output dtype decides support."""

    def check(self, node):
        dtype = node.out_dtype(0)
        return None if dtype in CTYPES else f"dtype {dtype}"

    def out_type(self, node) -> str:
        return ctype(node.out_dtype(0))


@register
class ConstantOfShape(Generator):
    ops = ("ConstantOfShape",)
    shape_inputs = (0,)

    def infer(self, node, pc):
        return [tuple(values_of(pc, node.inputs[0]))]

    def kernel(self, node):
        value = node.attr("value")
        value = 0 if value is None else value.reshape(-1)[0]
        out = node.outputs[0]
        body = f"out0[gid] = {literal(value, node.out_dtype(0))};"
        return Kernel([], [out], 1, lambda pc: [numel(pc.shape(out))], body=body, label="constant_of_shape")


@register
class Range(Generator):
    ops = ("Range",)
    shape_inputs = (0, 1, 2)

    def infer(self, node, pc):
        start, limit, delta = (pc.value(name).reshape(-1)[0] for name in node.inputs[:3])
        if node.out_dtype(0) in FLOATS:
            count = math.ceil((float(limit) - float(start)) / float(delta))
        else:
            count = -(-(int(limit) - int(start)) // int(delta))
        return [(max(count, 0),)]

    def kernel(self, node):
        t, out = self.out_type(node), node.outputs[0]
        body = f"out0[gid] = ({t})(in0[0] + ({t})gid * in1[0]);"
        return Kernel(
            [node.inputs[0], node.inputs[2]], [out], 1, lambda pc: [numel(pc.shape(out))], body=body, label="range"
        )


@register
class EyeLike(Generator):
    ops = ("EyeLike",)

    def check(self, node):
        return super().check(node) or (None if node.out_rank(0) == 2 else f"rank {node.out_rank(0)}")

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def kernel(self, node):
        src, k = node.inputs[0], int(node.attr("k", 0))

        def params(pc):
            shape = pc.shape(src)
            return [numel(shape), shape[1]]

        body = f"out0[gid] = ({self.out_type(node)})(gid % p[1] - gid / p[1] == {k});"
        return Kernel([], [node.outputs[0]], 2, params, body=body, label="eye_like")


@register
class OneHot(Generator):
    ops = ("OneHot",)
    shape_inputs = (1,)

    def check(self, node):
        reason = super().check(node)
        if reason is None and node.in_dtype(0) not in NUMERIC:
            reason = f"indices dtype {node.in_dtype(0)}"
        if reason is None and node.out_rank(0) is None:
            reason = "unknown rank"
        return reason

    def axis(self, node, rank: int) -> int:
        return normalize_axis(node.attr("axis", -1), rank + 1)

    def infer(self, node, pc):
        shape = pc.shape(node.inputs[0])
        axis = self.axis(node, len(shape))
        depth = int(pc.value(node.inputs[1]).reshape(-1)[0])
        return [shape[:axis] + (depth,) + shape[axis:]]

    def kernel(self, node):
        src = node.inputs[0]
        axis = self.axis(node, node.out_rank(0) - 1)

        def params(pc):
            out = self.infer(node, pc)[0]
            return [numel(out), out[axis], numel(out[axis + 1 :])]

        body = (
            f"{split3(1)} i64 x_ = (i64)in0[o_ * inner_ + i_]; if (x_ < 0) x_ += A_; "
            "out0[gid] = x_ == a_ ? in1[1] : in1[0];"
        )
        return Kernel([src, node.inputs[2]], [node.outputs[0]], 3, params, body=body, label="one_hot")


# ---- scatters -------------------------------------------------------------------------------

SCATTER_GROUP = 128

C_SCATTER = """static void $name(const i64 *p, const $T *in0, const $I *in1, const $T *in2, $T *out0$extra) {
  const i64 n_ = p[0], m_ = p[1];
  #pragma omp parallel for schedule(static) if(n_ > PARALLEL_THRESHOLD)
  for (i64 g_ = 0; g_ < n_; g_++) out0[g_] = in0[g_];
  $PRAGMA
  for (i64 gid = 0; gid < m_; gid++) { $BODY }
}
"""

CL_SCATTER = """__kernel __attribute__((reqd_work_group_size($WG, 1, 1)))
void $name(__global const long *P, const long poff, __global const $T *in0, __global const $I *in1,
            __global const $T *in2, __global $T *out0$extra) {
  __global const long *p = P + poff;
  const i64 n_ = p[0], m_ = p[1], l_ = get_local_id(0);
  for (i64 g_ = l_; g_ < n_; g_ += $WG) out0[g_] = in0[g_];
  barrier(CLK_GLOBAL_MEM_FENCE);
  $LOOP { $BODY }
}
"""

SCATTER_SOURCES = {"c": C_SCATTER, "opencl": CL_SCATTER}

REDUCE = {
    "none": "out0[o_] = u_;",
    "add": "out0[o_] = ($T)(out0[o_] + u_);",
    "mul": "out0[o_] = ($T)(out0[o_] * u_);",
    "max": "out0[o_] = H_MAX(out0[o_], u_);",
    "min": "out0[o_] = H_MIN(out0[o_], u_);",
}


class Scatter(Movement):
    """Copy data to the output, then apply each update (in parallel only without reduction)."""

    dtypes = frozenset(CTYPES)  # its sources declare buffers of the computed type

    def reduction(self, node) -> str:
        value = node.attr("reduction", "none")
        return value.decode() if isinstance(value, bytes) else value

    def check_more(self, node):
        reduction = self.reduction(node)
        if reduction not in REDUCE:
            return f"reduction {reduction}"
        if reduction != "none" and node.in_dtype(0) not in NUMERIC:
            return f"dtype {node.in_dtype(0)} with reduction"
        return indices_check(node, 1)

    def dialects(self, node):
        return SCATTER_SOURCES.keys()

    def infer(self, node, pc):
        return [pc.shape(node.inputs[0])]

    def scatter_kernel(self, node, body: str, n_params: int, params) -> Kernel:
        """A kernel running `body` for each update `gid`; it sets i64 `o_` and says where $APPLY goes."""
        reduction = self.reduction(node)
        parallel = reduction == "none"
        t = ctype(node.in_dtype(0))
        apply = "{ const " + t + " u_ = in2[gid]; " + render(REDUCE[reduction], T=t) + " }"
        values = {
            "PRAGMA": "#pragma omp parallel for schedule(static) if(m_ * 4 > PARALLEL_THRESHOLD)" if parallel else "",
            "LOOP": f"for (i64 gid = l_; gid < m_; gid += {SCATTER_GROUP})"
            if parallel
            else "if (l_ == 0) for (i64 gid = 0; gid < m_; gid++)",
            "BODY": render(body, APPLY=apply),
            "WG": SCATTER_GROUP,
            "T": t,
            "I": ctype(node.in_dtype(1)),
        }
        ranges = {"opencl": lambda params: ((SCATTER_GROUP,), (SCATTER_GROUP,))}
        return Kernel(
            [node.inputs[0], node.inputs[1], node.inputs[2]],
            [node.outputs[0]],
            n_params,
            params,
            sources={d: Source(template, values, ranges.get(d)) for d, template in SCATTER_SOURCES.items()},
            inplace=[(0, 0)],
            label=node.op.lower(),
        )


@register
class ScatterElements(Scatter):
    ops = ("ScatterElements", "Scatter")

    def kernel(self, node):
        data, indices = node.inputs[0], node.inputs[1]
        rank = self.data_rank(node)
        axis = normalize_axis(node.attr("axis", 0), rank)

        def params(pc):
            shape, ishape = pc.shape(data), pc.shape(indices)
            return [numel(shape), numel(ishape), *ishape, *strides_of(shape), int(shape[axis])]

        k = f"p[{2 + 2 * rank}]"
        terms = [f"c{a}" if a != axis else "x_" for a in range(rank)]
        body = (
            f"{coords(rank, 2)} i64 x_ = (i64)in1[gid]; if (x_ < 0) x_ += {k}; "
            f"if (x_ >= 0 && x_ < {k}) {{ const i64 o_ = {dot(terms, 2 + rank)}; $APPLY }}"
        )
        return self.scatter_kernel(node, body, 3 + 2 * rank, params)


@register
class ScatterND(Scatter):
    ops = ("ScatterND",)

    def kernel(self, node):
        data, indices = node.inputs[0], node.inputs[1]
        rank = self.data_rank(node)

        def params(pc):
            shape, ishape = pc.shape(data), pc.shape(indices)
            kk = ishape[-1]
            inner = numel(shape[kk:])
            return [numel(shape), numel(ishape[:-1]) * inner, inner, kk, *shape, *strides_of(shape)]

        body = (
            "const i64 inner_ = p[2], kk_ = p[3]; const i64 t_ = gid / inner_; i64 o_ = gid % inner_; "
            + nd_offset(rank, "t_ * kk_", 4)
            + " if (ok_) $APPLY"
        )
        return self.scatter_kernel(node, body, 4 + 2 * rank, params)
