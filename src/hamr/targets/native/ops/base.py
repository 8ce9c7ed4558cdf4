"""What an op lowering provides, and the kernel it emits.

A lowering turns one node into native code shared by every native dialect (C for the
`cpu` target, OpenCL C for `opencl`). There are four kinds:

- ``elementwise``: ``expr`` returns one C expression per output; the fuser chains these
  into a single loop (or into a GEMM/Conv epilogue).
- ``kernel``: ``kernel`` returns a :class:`Kernel`: either a *map* body run once per work
  item ``gid`` (parallel in every dialect), or per-dialect functions (``Kernel.sources``,
  dialect -> :class:`Source`) for kernels such as GEMM that need more than a flat loop.
  Such a lowering names its dialects in ``dialects(node)``; a target whose dialect is
  missing vetoes the node (it falls back, with the reason in the partition).
- ``view``: the output is the input's buffer under another shape (Reshape, Squeeze...).
- ``host``: evaluated while planning, from shapes and constants (Shape, Size).

Shapes are symbolic at compile time. Everything size-dependent in generated code reads
an ``i64`` parameter ``p[k]`` that ``Kernel.params`` computes when a plan is made for
concrete input shapes, so new batch or sequence sizes never need a recompile.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from hamr.ir.dtypes import NUMERIC
from hamr.ir.node_view import NodeView

Shape = tuple[int, ...]
VARIABLE_PARAMS = -1  # Kernel.n_params of a kernel whose parameter count depends on the shapes


class PlanCtx(Protocol):
    """Concrete facts while planning for one set of input shapes."""

    def shape(self, name: str) -> Shape: ...

    def value(self, name: str) -> np.ndarray:
        """The value of a host-known tensor (constants, shape arithmetic)."""
        ...


LaunchRange = Callable[[list[int]], tuple[tuple[int, ...], tuple[int, ...] | None]]


@dataclass
class Source:
    """A custom kernel in one dialect: a ``render`` template and its values.

    The renderer adds ``$name`` (the function name) and ``$extra`` (the buffer arguments of a
    fused epilogue, with a leading comma). C: ``static void $name(const i64 *p, <args>$extra)``;
    OpenCL C: ``__kernel void $name(__global const long *P, const long poff, <args>$extra)``.
    """

    template: str
    values: dict[str, object] = field(default_factory=dict)
    range: LaunchRange | None = None  # params -> (global size, local size) where the runtime launches a grid
    prelude: str = ""  # what the dialect's source needs once before any such kernel (the portable form's prelude)


@dataclass
class RowLoop:
    """A map kernel's body over rows of `p[length]` work items, for dialects that loop on the host.

    `setup` runs at the first item `g_` of each row (or of a thread's part of one); `body` then runs for
    each `gid` of it. Where `fast_when` holds, `fast_setup` and `fast_body` run instead (the same values,
    with the reads that stay put along a row hoisted out of the loop).
    """

    length: int
    setup: str
    body: str
    fast_when: str
    fast_setup: str
    fast_body: str


@dataclass
class Kernel:
    inputs: list[str]  # buffer arguments in0, in1, ... (value names)
    outputs: list[str]  # buffer arguments out0, out1, ...
    n_params: int  # length of the list `params` returns; VARIABLE_PARAMS: any (a kernel that takes no epilogue)
    params: Callable[[PlanCtx], list[int]]
    body: str = ""  # map kernel: statements for one work item `gid`; p[0] is the item count
    # map kernel: the same body in rows, where the divisions of broadcast reads run once per row;
    # anchor: its epilogue in rows, for STORE_RANGE where loops run on the host
    rows: RowLoop | None = None
    sources: dict[str, Source] = field(default_factory=dict)  # custom kernel: dialect -> its source
    inplace: list[tuple[int, int]] = field(default_factory=list)  # (output, input) that may share a buffer
    anchor: bool = False  # custom kernel that writes through STORE(gid, acc) and may take an epilogue
    label: str = ""
    grain: int = 1  # rough cost of one work item, in elements (decides when to go parallel)
    own_args: tuple[int, int] | None = None  # (inputs, outputs) named by a custom source itself
    # inputs that are weights computed at load from another weight: name -> (source weight, function)
    derived: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = field(default_factory=dict)
    epilogue_casts: bool = False  # an anchor whose epilogue may change the type (an int32 GEMM, then Cast)

    @property
    def is_map(self) -> bool:
        return bool(self.body)

    def arg_order(self) -> list[tuple[str, int]]:
        """Buffer arguments in signature order: ("in", i) / ("out", i)."""
        ni, no = self.own_args or (len(self.inputs), len(self.outputs))
        return (
            [("in", i) for i in range(ni)]
            + [("out", i) for i in range(no)]
            + [("in", i) for i in range(ni, len(self.inputs))]
            + [("out", i) for i in range(no, len(self.outputs))]
        )

    def arg_value(self, arg: tuple[str, int]) -> str:
        return self.inputs[arg[1]] if arg[0] == "in" else self.outputs[arg[1]]


class Lowering:
    kind = "kernel"
    ops: tuple[str, ...] = ()
    shape_inputs: tuple[int, ...] = ()  # inputs whose values must be known when planning
    dtypes: frozenset[str] = NUMERIC  # accepted dtypes of input 0 (override check() for more)

    def check(self, node: NodeView) -> str | None:
        """None if this lowering handles the node, else the reason it does not."""
        dtype = node.in_dtype(0) if node.inputs else node.out_dtype(0)
        if dtype not in self.dtypes:
            return f"dtype {dtype}"
        return None

    def dialects(self, node: NodeView) -> Collection[str] | None:
        """The dialects whose source this node's custom kernel has; None: no dialect-specific source
        (a map kernel or none), which every dialect runs."""
        return None

    def infer(self, node: NodeView, pc: PlanCtx) -> list[Shape]:
        raise NotImplementedError

    def expr(self, node: NodeView, args: list[str]) -> list[str]:
        raise NotImplementedError

    def kernel(self, node: NodeView) -> Kernel:
        raise NotImplementedError

    def host(self, node: NodeView, pc: PlanCtx) -> list[np.ndarray]:
        raise NotImplementedError


# ---- helpers used by many lowerings -------------------------------------------------


def numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def strides_of(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


def broadcast_shapes(*shapes) -> Shape:
    return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))


def broadcast_strides(shape, target) -> list[int]:
    """Element strides that read `shape` broadcast to `target` (0 along broadcast axes)."""
    rank = len(target)
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    base = strides_of(padded)
    return [0 if padded[a] == 1 and target[a] != 1 else base[a] for a in range(rank)]


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def static_equal(a, b) -> bool:
    """Two symbolic shapes that are certainly equal (every dim known and the same)."""
    if a is None or b is None or len(a) != len(b):
        return False
    return all(x is not None and x == y for x, y in zip(a, b))
