"""What a custom op is: its name, shape/type function, NumPy reference and optional native kernels.

A custom op lives in a domain of its own (never one onnx defines). hamr needs three things
from it:

- a *shape/type function* ``infer(dtypes, shapes, attributes)``: the input element types
  as numpy names (``"float32"``, ``None`` when unknown or absent), the input shapes as
  tuples whose dims are ints, symbolic names (str) or ``None`` (the whole shape is
  ``None`` when the rank is unknown), and the node's attributes as python values merged
  over the declared defaults. It returns one ``(dtype, shape)`` per output; either may be
  ``None`` when it cannot tell.
- a *NumPy reference* ``reference(*inputs, **attributes)`` returning an array or a tuple of
  arrays. It is what the reference target runs, and what every native target falls back
  to when the op has no kernel for it.
- optionally, *native kernels* per target (``cpu``, ``opencl``): today an
  :class:`Elementwise` expression in the C-like dialect both native targets compile, which
  the fuser chains with its neighbours like any built-in elementwise op.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from hamr.errors import CustomOpError, first_line
from hamr.ops.grid_kernel import GridKernel
from hamr.plugins import native_target_names

#: Domains onnx itself defines; custom ops may not claim them.
STANDARD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training", "experimental"}
)
FLOAT_DTYPES = frozenset({"float32", "float64"})

Dim = int | str | None
Shape = tuple[Dim, ...] | None
TypeAndShape = tuple[str | None, Shape]
InferFn = Callable[[list[str | None], list[Shape], dict[str, Any]], Sequence[TypeAndShape]]


def broadcast_shape(*shapes: Shape) -> Shape:
    """The numpy broadcast of symbolic shapes (None when a rank is unknown or a dim cannot be told)."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0} - {1}
        fixed = {d for d in dims if isinstance(d, int)}
        if len(fixed) > 1:
            raise ValueError(f"shapes {', '.join(map(str, shapes))} do not broadcast")
        if fixed:
            out.append(fixed.pop())
        elif not dims:
            out.append(1)
        else:
            out.append(dims.pop() if len(dims) == 1 else None)
    return tuple(out)


def broadcast(dtypes: list[str | None], shapes: list[Shape], attributes: dict[str, Any]) -> list[TypeAndShape]:
    """The default shape/type function: one output of input 0's dtype and the inputs' broadcast shape."""
    return [(dtypes[0] if dtypes else None, broadcast_shape(*shapes))]


def python_value(value: Any) -> Any:
    """onnx.reference's attribute values (np.float32, lists of them) as plain python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [python_value(v) for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


def _dtype_name(dtype: Any, where: str) -> str | None:
    if dtype is None:
        return None
    try:
        return np.dtype(dtype).name
    except TypeError as exc:
        raise CustomOpError(f"{where}: {dtype!r} is not a numpy dtype") from exc


def _shape(shape: Any, where: str) -> Shape:
    if shape is None:
        return None
    dims: list[Dim] = []
    for d in shape:
        if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            dims.append(int(d))
        elif d is None or isinstance(d, str):
            dims.append(d)
        else:
            raise CustomOpError(f"{where}: dim {d!r} of shape {tuple(shape)!r} is not an int >= 0, a name or None")
    return tuple(dims)


@dataclass(frozen=True)
class Elementwise:
    """A native kernel as one C-like expression per output, computed for every element.

    Placeholders (``str.format`` fields): ``{in0}``, ``{in1}``... the node's inputs (read
    with numpy broadcasting), ``{T}`` the output's C type (``f32``, ``f64``, ``i64``...),
    and any declared attribute, substituted as a literal (floats typed as ``{T}``, so f32
    arithmetic stays f32). The expression may call what both dialects know: ``exp``,
    ``tanh``, ``sqrt``, ``fabs``..., ``H_MAX``/``H_MIN``. Write literal braces as ``{{ }}``.
    ``dtypes`` are the input element types the kernel accepts; others fall back to the
    reference. The output shape is the broadcast of the inputs' shapes.
    """

    expr: str | tuple[str, ...]
    dtypes: frozenset[str] = FLOAT_DTYPES

    def __post_init__(self):
        exprs = (self.expr,) if isinstance(self.expr, str) else tuple(self.expr)
        if not exprs or not all(isinstance(e, str) and e.strip() for e in exprs):
            raise CustomOpError(f"an Elementwise kernel needs one non-empty expression per output, got {self.expr!r}")
        object.__setattr__(self, "expr", exprs)
        object.__setattr__(
            self, "dtypes", frozenset(_dtype_name(d, "an Elementwise kernel's dtypes") for d in self.dtypes)
        )

    @property
    def exprs(self) -> tuple[str, ...]:
        return self.expr  # normalised to a tuple

    def fields(self) -> set[str]:
        names: set[str] = set()
        for e in self.exprs:
            try:
                parsed = list(string.Formatter().parse(e))
            except ValueError as exc:
                raise CustomOpError(f"kernel expression {e!r} is malformed: {exc}") from exc
            for _, name, spec, conversion in parsed:
                if name is None:
                    continue
                if not name or spec or conversion:
                    raise CustomOpError(
                        f"kernel expression {e!r}: write placeholders as {{in0}}, {{T}} or {{attribute}}"
                    )
                names.add(name)
        return names

    def inputs_used(self) -> list[int]:
        return sorted(int(n[2:]) for n in self.fields() if _is_input_field(n))


def _is_input_field(name: str) -> bool:
    return name.startswith("in") and name[2:].isdigit()


def _is_torch_op_name(name: Any) -> bool:
    parts = name.split("::") if isinstance(name, str) else []
    return len(parts) == 2 and all(part.isidentifier() for part in parts)


@dataclass(frozen=True, kw_only=True, eq=False)
class CustomOp:
    """One op of a custom domain. Register it with :func:`hamr.ops.register` or a ``hamr.ops`` entry point.

    ``attributes`` declares the op's attributes with their defaults (python values); the
    node's own attributes override them before ``infer``, ``reference`` and the kernels
    see them. ``kernels`` maps a native target (``"cpu"``, ``"opencl"``) to an
    :class:`Elementwise` kernel (a bare string is the expression of one); ``grid_kernel`` is instead
    one :class:`~hamr.ops.grid_kernel.GridKernel` in the portable form, for every native target. ``torch_op`` names the
    ``torch.library`` op (``"namespace::name"``) that a PyTorch model calls for this op: the torch
    frontend exports each call as a node of this op.
    """

    domain: str
    name: str
    reference: Callable[..., Any]
    infer: InferFn = broadcast
    attributes: Mapping[str, Any] = field(default_factory=dict)
    kernels: Mapping[str, Elementwise | str] = field(default_factory=dict)
    grid_kernel: GridKernel | None = None
    doc: str = ""
    torch_op: str = ""

    def __post_init__(self):
        label = f"custom op {self.domain!r}::{self.name!r}"
        if not isinstance(self.domain, str) or not self.domain or self.domain in STANDARD_DOMAINS:
            raise CustomOpError(f"{label}: the domain must be a non-empty name onnx does not define")
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise CustomOpError(f"{label}: the name must be an identifier")
        if not callable(self.reference) or not callable(self.infer):
            raise CustomOpError(f"{label}: reference and infer must be callables")
        if self.torch_op and not _is_torch_op_name(self.torch_op):
            raise CustomOpError(f"{label}: torch_op must read 'namespace::name', got {self.torch_op!r}")
        if self.grid_kernel is not None:
            self._check_grid_kernel(label)
        kernels = {}
        for target, kernel in dict(self.kernels).items():
            if target not in native_target_names():
                raise CustomOpError(
                    f"{label}: kernel for unknown target {target!r} (known: {', '.join(native_target_names())})"
                )
            kernel = Elementwise(kernel) if isinstance(kernel, str) else kernel
            if not isinstance(kernel, Elementwise):
                raise CustomOpError(f"{label}: the {target} kernel must be an Elementwise, not {type(kernel).__name__}")
            unknown = sorted(
                n for n in kernel.fields() if n != "T" and not _is_input_field(n) and n not in self.attributes
            )
            if unknown:
                raise CustomOpError(
                    f"{label}: the {target} kernel uses {{{unknown[0]}}}, which is neither {{inN}}, {{T}} "
                    "nor a declared attribute (declare it in attributes= with its default)"
                )
            kernels[target] = kernel
        object.__setattr__(self, "kernels", MappingProxyType(kernels))
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    def _check_grid_kernel(self, label: str) -> None:
        if not isinstance(self.grid_kernel, GridKernel):
            raise CustomOpError(f"{label}: grid_kernel must be a GridKernel, not {type(self.grid_kernel).__name__}")
        if self.kernels:
            raise CustomOpError(f"{label}: give either Elementwise kernels or a grid_kernel, not both")

    @property
    def key(self) -> tuple[str, str]:
        return self.domain, self.name

    @property
    def label(self) -> str:
        return f"{self.domain}::{self.name}"

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The declared defaults, overridden by the node's attributes."""
        return {**self.attributes, **given}

    def infer_outputs(
        self, dtypes: list, shapes: list, attributes: Mapping[str, Any], n_outputs: int, node: str = ""
    ) -> list[TypeAndShape]:
        """Run the shape/type function and check what it returns."""
        where = f"shape function of custom op {self.label}" + (f" at node '{node}'" if node else "")
        try:
            results = list(self.infer(list(dtypes), list(shapes), self.resolve(attributes)))
        except CustomOpError:
            raise
        except Exception as exc:
            raise CustomOpError(f"{where} failed: {first_line(exc)}") from exc
        if len(results) != n_outputs:
            raise CustomOpError(f"{where} returned {len(results)} output(s); the node has {n_outputs}")
        checked = []
        for result in results:
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise CustomOpError(f"{where} must return (dtype, shape) pairs, got {result!r}")
            checked.append((_dtype_name(result[0], where), _shape(result[1], where)))
        return checked

    def evaluate(self, inputs: list, attributes: Mapping[str, Any], n_outputs: int) -> tuple:
        """Run the NumPy reference on concrete inputs; check its outputs against the shape function.

        Failures are RuntimeErrors with one line that starts with the original exception's
        type; the runtime turns them into a KernelError naming the node and the device.
        """
        resolved = self.resolve(attributes)
        try:
            result = self.reference(*inputs, **resolved)
        except Exception as exc:
            raise RuntimeError(first_line(exc)) from exc
        outputs = tuple(np.asarray(r) for r in (result if isinstance(result, (tuple, list)) else (result,)))
        if len(outputs) != n_outputs:
            raise RuntimeError(
                f"the reference of {self.label} returned {len(outputs)} output(s); the node has {n_outputs}"
            )
        if all(isinstance(x, np.ndarray) for x in inputs):
            expected = self.infer_outputs(
                [x.dtype.name for x in inputs], [x.shape for x in inputs], attributes, n_outputs
            )
            for i, (out, (dtype, shape)) in enumerate(zip(outputs, expected)):
                if dtype is not None and out.dtype.name != dtype:
                    raise RuntimeError(
                        f"the reference of {self.label} returned {out.dtype.name} for output {i}; its shape function says {dtype}"
                    )
                if shape is not None and (
                    len(shape) != out.ndim or any(isinstance(d, int) and d != n for d, n in zip(shape, out.shape))
                ):
                    raise RuntimeError(
                        f"the reference of {self.label} returned shape {out.shape} for output {i}; "
                        f"its shape function says {shape}"
                    )
        return outputs
