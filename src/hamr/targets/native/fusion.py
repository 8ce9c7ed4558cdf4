"""Generated code for fused elementwise chains, standalone or as a GEMM/Conv epilogue.

Every value inside a fused group has the group's domain shape (the fuser only admits a
node whose output has that shape), so one flat index `gid` addresses them all. Inputs
from outside the group are read through one of four index modes chosen from their
symbolic shapes: the same shape (`gid`), a scalar (`0`), a trailing-dims suffix
(`gid % numel`), a block of the domain's axes (`gid / inner`, or `(gid / inner) % block` for a per-channel vector
against NCHW) or general broadcasting (coordinates times strides over the input's axes
merged at plan time, from parameters).

A standalone chain with suffix or strided inputs also gets a row form (`RowLoop`): the
domain cut into rows along which every such read moves by a constant stride (0 or 1), so
the divisions run once per row and the inner loop vectorises.
"""

from __future__ import annotations

from dataclasses import dataclass

from hamr.ir.dtypes import ctype, load, rounded, store
from hamr.ir.node_view import NodeView
from hamr.targets.native.ops import lowering_for
from hamr.targets.native.ops.base import RowLoop, broadcast_strides, numel, static_equal
from hamr.targets.native.ops.strided_copy import merged
from hamr.targets.native.render.template import render


def _index_mode(shape, domain) -> str:
    if static_equal(shape, domain):
        return "same"
    if shape is not None and all(d == 1 for d in shape):
        return "scalar"
    if shape is not None and len(shape) <= len(domain) and static_equal(shape, domain[len(domain) - len(shape) :]):
        return "suffix"
    block = _block(shape, domain)
    if block is not None:
        return "outer" if block[0] == 0 else "block"
    return "strided"


def _block(shape, domain) -> tuple[int, int] | None:
    """(j, k) when `shape`, right-aligned to `domain`, is the domain's axes j..k-1 and 1 elsewhere (a per-channel
    vector against NCHW, say): its element at `gid` is (gid / numel(domain[k:])) % numel(domain[j:k])."""
    if shape is None or len(shape) > len(domain):
        return None
    padded = (1,) * (len(domain) - len(shape)) + tuple(shape)
    kept = [a for a, d in enumerate(padded) if d != 1]
    if not kept:
        return None
    j, k = kept[0], kept[-1] + 1
    if not static_equal(padded[j:k], domain[j:k]):
        return None
    return j, k


@dataclass
class Epilogue:
    body: str  # statements for one `gid`; reads `acc` when fused after an anchor
    inputs: list[str]  # external inputs, in the order their buffers are passed
    outputs: list[str]  # values written, in order
    n_params: int
    params: object  # Callable[[PlanCtx], list[int]]
    rows: RowLoop | None = None


def fuse_body(
    nodes: list[NodeView],
    domain_value: str,
    domain_shape,
    escaping: set[str],
    param_base: int,
    first_input: int = 0,
    first_output: int = 0,
    acc: tuple[str, str] | None = None,
) -> Epilogue:
    """Code for `nodes` (an elementwise chain) over the domain of `domain_value`.

    `acc` = (value name, C type) of an anchor result already in a register.
    Inputs are named in{first_input}..., outputs out{first_output}...
    """
    rank = len(domain_shape)
    local: dict[str, str] = {}
    lines: list[str] = []
    inputs: list[str] = []
    modes: list[str] = []
    blocks: list[tuple[int, int] | None] = []  # per input, the axes an outer or block read spans
    outputs: list[str] = []
    dtypes: dict[str, str] = {}
    if acc is not None:
        local[acc[0]] = "acc"
    strided_slots: list[str] = []
    templated: list[int] = []  # lines (the reads of inputs) with $DIMS / $SUFFIX, known at the end
    setup: list[str] = []  # row form: per row starting at g_, the row's offset of each suffix/strided input
    general: list[str] = []  # row form: the body, strided reads moving by their inner stride $DIMS[$INNER + k]
    fast: list[str] = []  # row form: the body where each strided input moves by the stride its shapes suggest
    hoisted: list[str] = []  # row form: reads of the fast body that stay put along a row
    expected: list[int] = []  # per strided input, the inner stride the fast body assumes

    def read(name: str, dtype: str, shape) -> str:
        if name in local:
            return local[name]
        index = first_input + len(inputs)
        mode = _index_mode(shape, domain_shape)
        inputs.append(name)
        modes.append(mode)
        blocks.append(_block(shape, domain_shape) if mode in ("outer", "block") else None)
        var = f"x{len(inputs) - 1}"
        decl = f"const {ctype(dtype)} {var} ="
        if mode == "same":
            at = "gid"
        elif mode == "scalar":
            at = "0"
        elif mode == "suffix":
            at = f"H_SUFFIX(gid, p[$SUFFIX + {2 * (len(inputs) - 1)}])"
            setup.append(f"const i64 o{len(inputs) - 1}_ = g_ % p[$SUFFIX + {2 * (len(inputs) - 1)}];")
        elif mode == "outer":
            at = f"(gid / p[$SUFFIX + {2 * (len(inputs) - 1)}])"
            setup.append(f"const i64 o{len(inputs) - 1}_ = g_ / p[$SUFFIX + {2 * (len(inputs) - 1)}];")
        elif mode == "block":
            at = f"((gid / p[$SUFFIX + {2 * (len(inputs) - 1)}]) % p[$SUFFIX + {2 * (len(inputs) - 1) + 1}])"
            setup.append(f"const i64 o{len(inputs) - 1}_ = {at.replace('gid', 'g_')};")
        else:
            strided_slots.append(name)
            at = f"off{len(inputs) - 1}"
            templated.append(len(lines))
            lines.append(_strided_offset(at, rank, len(strided_slots) - 1))
            setup.append(_strided_offset(f"o{len(inputs) - 1}_", rank, len(strided_slots) - 1, start="g_"))
        templated.append(len(lines))
        lines.append(f"{decl} {load(dtype, f'in{index}[{at}]')};")
        if mode == "same":
            general.append(lines[-1])
            fast.append(lines[-1])
        elif mode == "scalar":
            general.append(lines[-1])
            hoisted.append(lines[-1])
        elif mode == "suffix":
            row_read = f"{decl} {load(dtype, f'in{index}[o{len(inputs) - 1}_ + (gid - g_)]')};"
            general.append(row_read)
            fast.append(row_read)
        else:
            k = len(expected)
            o = f"o{len(inputs) - 1}_"
            general.append(f"{decl} {load(dtype, f'in{index}[{o} + (gid - g_) * p[$INNER + {k}]]')};")
            if mode == "strided":
                expected.append(_expected_inner_stride(shape, domain_shape))
            else:
                expected.append(int(blocks[-1][1] == rank))
            if expected[-1]:
                fast.append(f"{decl} {load(dtype, f'in{index}[{o} + (gid - g_)]')};")
            else:
                hoisted.append(f"{decl} {load(dtype, f'in{index}[{o}]')};")
        local[name] = var
        dtypes[name] = dtype
        return var

    for n, node in enumerate(nodes):
        lowering = lowering_for(node.domain, node.op)
        used = getattr(lowering, "uses", lambda _n: range(len(_n.inputs)))(node)
        args = [""] * len(node.inputs)
        for i in used:
            if node.has_input(i):
                args[i] = read(node.inputs[i], node.in_dtype(i), node.in_shape(i))
        for k, expr in enumerate(lowering.expr(node, args)):
            out = node.outputs[k]
            var = f"v{n}_{k}"
            dtype = node.out_dtype(k)
            value = expr if getattr(lowering, "rounds", False) else rounded(dtype, expr)
            lines.append(f"const {ctype(dtype)} {var} = {value};")
            general.append(lines[-1])
            fast.append(lines[-1])
            local[out] = var
            dtypes[out] = dtype
    for name in sorted(escaping, key=lambda v: _order(v, nodes, acc)):
        if name in local:
            outputs.append(name)
            value = store(dtypes[name], local[name]) if name in dtypes else local[name]
            lines.append(f"out{first_output + len(outputs) - 1}[gid] = {value};")
            general.append(lines[-1])
            fast.append(lines[-1])

    # parameters: domain dims, then per strided input its merged axes (count, dims, strides), then two sizes per
    # input (a suffix's size, or the inner size and block size of an outer or block read), then the row length
    # and per strided, outer or block input its stride along a row
    n_inputs = len(inputs)
    n_strided = len(strided_slots)
    suffix_at = param_base + rank + _slot_size(rank) * n_strided
    n_params = rank + _slot_size(rank) * n_strided + 2 * n_inputs + 1 + len(expected)
    names, kinds = list(inputs), list(modes)
    where = dict(DIMS=f"(p + {param_base})", SUFFIX=suffix_at, INNER=suffix_at + 2 * n_inputs + 1)
    for i in templated:
        lines[i] = render(lines[i], **where)
    body = " ".join(lines)
    rows = None
    if setup:
        fast_when = " && ".join(f"p[$INNER + {k}] == {s}" for k, s in enumerate(expected)) or "1"
        rows = RowLoop(
            length=suffix_at + 2 * n_inputs,
            setup=render(" ".join(setup), **where),
            body=render(" ".join(general), **where),
            fast_when=render(fast_when, **where),
            fast_setup=render(" ".join(hoisted), **where),
            fast_body=render(" ".join(fast), **where),
        )

    def params(pc):
        dims = pc.shape(domain_value)
        out = list(dims)
        row, inner = max(numel(dims), 1), {}
        for name in strided_slots:
            slot = _merged_slot(broadcast_strides(pc.shape(name), dims), dims)
            count = slot[0]
            row = min(row, slot[count])
            inner[name] = slot[1 + max(len(dims), 1) + count - 1]
            out += slot
        for name, mode, block in zip(names, kinds, blocks):
            sizes = _sizes(mode, pc.shape(name), dims, block)
            out += sizes
            if mode == "suffix":
                row = min(row, sizes[0])
            elif block is not None:
                along = sizes[0] == 1 and sizes[1] > 1  # the block is the domain's last axes: it moves along a row
                row = min(row, sizes[1] if along else sizes[0])
                inner[name] = 1 if along else 0
        return out + [max(row, 1)] + [inner[name] for name in names if name in inner]

    return Epilogue(body, inputs, outputs, n_params, params, rows)


def _sizes(mode: str, shape, dims, block: tuple[int, int] | None) -> list[int]:
    if mode == "suffix":
        return [max(numel(shape), 1), 0]
    if block is not None:
        j, k = block
        return [max(numel(dims[k:]), 1), max(numel(dims[j:k]), 1)]
    return [0, 0]


def _order(name, nodes, acc):
    if acc is not None and name == acc[0]:
        return -1
    for n, node in enumerate(nodes):
        if name in node.outputs:
            return n
    return len(nodes)


def _slot_size(rank: int) -> int:
    return 1 + 2 * max(rank, 1)


def _merged_slot(strides: list[int], dims) -> list[int]:
    """[K, dims (K merged axes, padded), strides (padded)]: size-1 axes dropped, neighbours that the
    input reads alike (both broadcast, or contiguous) joined, so most reads take one or two divisions."""
    d, m = merged([int(x) for x in dims], [int(x) for x in strides])
    pad = max(len(dims), 1) - len(d)
    return [len(d), *d, *([1] * pad), *m, *([0] * pad)]


def _expected_inner_stride(shape, domain) -> int:
    """0 where the input's shapes say it is broadcast along the domain's last axis that is not 1, else 1."""
    if shape is None:
        return 1
    pad = len(domain) - len(shape)
    for a in range(len(domain) - 1, -1, -1):
        if domain[a] == 1:
            continue
        return 0 if a < pad or shape[a - pad] == 1 else 1
    return 1


def _strided_offset(var: str, rank: int, slot: int, start: str = "gid") -> str:
    at = rank + _slot_size(rank) * slot
    dims, strides = at + 1, at + 1 + max(rank, 1)
    return (
        f"i64 {var} = 0; {{ i64 r_ = {start}; for (i64 a_ = $DIMS[{at}] - 1; a_ > 0; a_--) {{ "
        f"const i64 d_ = $DIMS[{dims} + a_]; {var} += (r_ % d_) * $DIMS[{strides} + a_]; r_ /= d_; }} "
        f"{var} += r_ * $DIMS[{strides}]; }}"
    )
