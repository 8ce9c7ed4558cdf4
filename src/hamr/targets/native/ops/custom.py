"""Custom ops with native kernels, as elementwise lowerings the fuser chains like built-in ones.

`lowering_for` returns a :class:`CustomLowering` for every registered custom op. It
checks what does not depend on the target (element types the dialects know, an output
shape that is the inputs' broadcast); :meth:`CustomLowering.veto` is what
``NativeTarget.accepts`` asks per target: the op needs a kernel for that target, with one
expression per output, for these input dtypes. Whatever is vetoed falls back to the
op's NumPy reference.

Expressions are chosen per target while a target lowers a model (:func:`lowering_target`),
so the cpu and opencl kernels of one op may differ.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers

from hamr.ir.dtypes import ctype
from hamr.ir.node_view import NodeView
from hamr.ops.definition import CustomOp, Elementwise, broadcast_shape
from hamr.ops.registry import lookup
from hamr.targets.native.ops.custom_grid import GridKernelLowering
from hamr.targets.native.ops.elementwise import Elementwise as ElementwiseLowering
from hamr.targets.native.ops.elementwise import lit

_target: contextvars.ContextVar[str | None] = contextvars.ContextVar("hamr_lowering_target", default=None)


@contextlib.contextmanager
def lowering_target(name: str):
    """Custom ops pick this target's kernel expressions while lowering inside the block."""
    token = _target.set(name)
    try:
        yield
    finally:
        _target.reset(token)


class CustomLowering(ElementwiseLowering):
    def __init__(self, op: CustomOp):
        self.op = op
        self.ops = (op.name,)

    def check_more(self, node: NodeView) -> str | None:
        if not self.op.kernels:
            return "custom op without a native kernel"
        inputs = [node.in_shape(i) for i in range(len(node.inputs)) if node.has_input(i)]
        try:
            expected = broadcast_shape(*inputs)
        except ValueError as exc:
            return str(exc)
        for i in range(len(node.outputs)):
            shape = node.out_shape(i)
            if (
                expected is not None
                and shape is not None
                and (
                    len(shape) != len(expected)
                    or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(shape, expected))
                )
            ):
                return f"output {i} has shape {shape}, not the inputs' broadcast shape {expected}"
        return None

    def veto(self, target: str, node: NodeView) -> str | None:
        """Why `target` cannot run this node natively (None: it can)."""
        kernel = self.op.kernels.get(target)
        if kernel is None:
            return f"custom op has no {target} kernel"
        if len(kernel.exprs) != len(node.outputs):
            return f"the {target} kernel has {len(kernel.exprs)} expression(s) for {len(node.outputs)} output(s)"
        for i in kernel.inputs_used():
            if not node.has_input(i):
                return f"the {target} kernel reads input {i}, which the node does not have"
        for i in range(len(node.inputs)):
            if node.has_input(i) and node.in_dtype(i) not in kernel.dtypes:
                return f"dtype {node.in_dtype(i)}"
        try:
            self._literals(node, kernel, "f64")
        except ValueError as exc:
            return str(exc)
        return None

    def _kernel(self) -> Elementwise:
        target = _target.get()
        if target is not None:
            return self.op.kernels[target]
        exprs = {k.exprs for k in self.op.kernels.values()}
        if len(exprs) != 1:
            raise RuntimeError(f"custom op {self.op.label}: lowering outside lowering_target() with per-target kernels")
        return next(iter(self.op.kernels.values()))

    def _literals(self, node: NodeView, kernel: Elementwise, t: str) -> dict[str, str]:
        given = {name: node.attr(name) for name in node.node.attributes}
        attributes = self.op.resolve(given)
        literals = {}
        for name in kernel.fields():
            if name == "T" or name.startswith("in") and name[2:].isdigit():
                continue
            value = attributes.get(name)
            if value is None:
                raise ValueError(f"attribute '{name}' has no value and no default")
            if isinstance(value, bool | numbers.Integral):
                literals[name] = str(int(value))
            elif isinstance(value, numbers.Real):
                literals[name] = lit(float(value), t)
            else:
                raise ValueError(f"attribute '{name}' ({type(value).__name__}) cannot be a literal in a kernel")
        return literals

    def uses(self, node: NodeView) -> list[int]:
        return self._kernel().inputs_used()

    def expr(self, node: NodeView, args: list[str]) -> list[str]:
        kernel = self._kernel()
        inputs = {f"in{i}": a for i, a in enumerate(args)}
        out = []
        for k, template in enumerate(kernel.exprs):
            t = ctype(node.out_dtype(k))
            out.append("(" + template.format(T=t, **inputs, **self._literals(node, kernel, t)) + ")")
        return out


_lowerings: dict[CustomOp, CustomLowering | GridKernelLowering] = {}


def custom_lowering(domain: str, op_type: str) -> CustomLowering | GridKernelLowering | None:
    op = lookup(domain, op_type)
    if op is None:
        return None
    lowering = _lowerings.get(op)
    if lowering is None:
        lowering = _lowerings[op] = GridKernelLowering(op) if op.grid_kernel is not None else CustomLowering(op)
    return lowering
