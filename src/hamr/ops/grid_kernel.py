"""A custom op's kernel in the portable form: one hamr kernel C source for every native target.

Where an :class:`~hamr.ops.definition.Elementwise` kernel computes one element, a grid kernel is a
whole launch: work-groups, local memory, barriers, atomics, warp shuffles and vector types
(docs/kernels.md). The entry kernel's parameters are, in order, one ``__global`` buffer per node
input (``const``), one per output, then scalars. ``launch(shapes, attributes)`` says, from the
inputs' concrete shapes and the node's attributes, how to run it: a :class:`Launch`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hamr.errors import CustomOpError, KernelSourceError, first_line
from hamr.ops.kernel_source import Function, KernelSource

MAX_GROUP_ITEMS = 1024


@dataclass(frozen=True)
class Launch:
    """How one node's kernel runs: work-groups per dimension, work-items per group, the scalar arguments."""

    grid: Sequence[int]
    block: Sequence[int]
    scalars: Sequence[int | float] = ()


LaunchFn = Callable[[list[tuple[int, ...]], dict], Launch]


@dataclass(frozen=True, eq=False)
class GridKernel:
    """``GridKernel(source, entry, launch)``: the kernel `entry` of the hamr kernel C `source`."""

    source: str
    entry: str
    launch: LaunchFn

    def __post_init__(self):
        try:
            parsed = KernelSource(self.source, f"grid kernel '{self.entry}'")
            kernel = parsed.kernel(self.entry)
        except KernelSourceError as exc:
            raise CustomOpError(str(exc)) from None
        if kernel.local_param is not None:
            raise CustomOpError(
                f"grid kernel '{self.entry}': a model's kernel sizes its local memory statically "
                "(declare __local arrays; a __local parameter is for hamr.kernels launches)"
            )
        scalars_seen = False
        for param in kernel.params:
            if param.kind == "scalar":
                scalars_seen = True
            elif scalars_seen:
                raise CustomOpError(
                    f"grid kernel '{self.entry}': buffer '{param.name}' after a scalar; buffers come first"
                )
        if not callable(self.launch):
            raise CustomOpError(f"grid kernel '{self.entry}': launch must be a callable (shapes, attributes) -> Launch")
        object.__setattr__(self, "parsed", parsed)

    @property
    def kernel(self) -> Function:
        return self.parsed.kernel(self.entry)

    @property
    def buffers(self):
        return [p for p in self.kernel.params if p.kind == "buffer"]

    @property
    def scalars(self):
        return [p for p in self.kernel.params if p.kind == "scalar"]

    def launch_for(self, shapes: list[tuple[int, ...]], attributes: dict, label: str) -> Launch:
        """Run `launch` and check what it returns (one line naming the op on any fault)."""
        where = f"launch function of custom op {label}"
        try:
            result = self.launch(shapes, attributes)
        except Exception as exc:
            raise CustomOpError(f"{where} failed: {first_line(exc)}") from exc
        if not isinstance(result, Launch):
            raise CustomOpError(f"{where} must return a hamr.ops.Launch, got {type(result).__name__}")
        dims = [tuple(result.grid), tuple(result.block)]
        for name, d in zip(("grid", "block"), dims):
            if not 1 <= len(d) <= 3 or not all(isinstance(x, numbers.Integral) and x >= 1 for x in d):
                raise CustomOpError(f"{where}: {name} must be 1 to 3 positive ints, got {d!r}")
        items = 1
        for x in dims[1]:
            items *= int(x)
        if items > MAX_GROUP_ITEMS:
            raise CustomOpError(f"{where}: a block of {items} work-items is more than {MAX_GROUP_ITEMS}")
        if len(result.scalars) != len(self.scalars):
            raise CustomOpError(
                f"{where} gave {len(result.scalars)} scalar(s); kernel '{self.entry}' takes {len(self.scalars)}"
            )
        return result
