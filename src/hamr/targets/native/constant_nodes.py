"""Values of the constant nodes computed at load, with NumPy where the op is simple.

Control-flow bodies hold hundreds of such nodes (silero-vad: 548 Constants, 98 Slices, 42 Concats, 28
Unsqueezes), and weights are dequantized at load (MiniLM int8: Cast, Mul); running each through onnx.reference
builds one evaluator per node. Each handler computes what onnx.reference computes, in the same NumPy
operations. `evaluate` returns None for anything it does not handle (an op, a type, an attribute, or input
onnx.reference would reject), and the caller evaluates that node with onnx.reference.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from hamr.ir.node_view import NodeView

#: element types the handlers compute on as NumPy does (not bfloat16, float8, int4, strings)
NUMERIC = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"}
)


def evaluate(node: NodeView, inputs: list) -> list[np.ndarray] | None:
    if node.node.domain not in ("", "ai.onnx"):
        return None
    handler = _HANDLERS.get(node.op)
    if handler is None or any(x is not None and np.asarray(x).dtype.name not in NUMERIC for x in inputs):
        return None
    try:
        with np.errstate(all="ignore"):
            return handler(node, inputs)
    except (ValueError, IndexError, TypeError, OverflowError):  # onnx.reference says why, in its own words
        return None


_CONSTANT_ATTRIBUTES = {
    "value": lambda v: np.asarray(v),
    "value_float": lambda v: np.asarray(v, dtype=np.float32),
    "value_floats": lambda v: np.asarray(v, dtype=np.float32),
    "value_int": lambda v: np.asarray(v, dtype=np.int64),
    "value_ints": lambda v: np.asarray(v, dtype=np.int64),
}


def _constant(node: NodeView, inputs: list):
    names = set(node.node.attributes)
    if len(names) != 1 or not names <= set(_CONSTANT_ATTRIBUTES):
        return None
    (name,) = names
    value = _CONSTANT_ATTRIBUTES[name](node.attr(name))
    return [value] if value.dtype.name in NUMERIC else None


def _identity(node: NodeView, inputs: list):
    return [inputs[0]]


def _elementwise(function):
    def handler(node: NodeView, inputs: list):
        a, b = (np.asarray(x) for x in inputs)
        if a.dtype != b.dtype or a.dtype == bool:
            return None
        return [np.asarray(function(a, b)).astype(a.dtype, copy=False)]

    return handler


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.divide(a, b)
    if np.any(b == 0):
        raise ValueError("integer division by zero")
    quotient, remainder = np.floor_divide(a, b), np.remainder(a, b)
    return quotient + ((remainder != 0) & ((a < 0) ^ (b < 0))).astype(quotient.dtype)  # toward zero, as C


def _cast(node: NodeView, inputs: list):
    to = node.attr("to")
    name = np.dtype(ir.DataType(to).numpy()).name if to is not None else None
    if name not in NUMERIC:
        return None
    return [np.asarray(inputs[0]).astype(name)]


def _ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _expand(node: NodeView, inputs: list):
    data = np.asarray(inputs[0])
    shape = np.broadcast_shapes(data.shape, tuple(_ints(inputs[1])))
    return [np.broadcast_to(data, shape)]


def _reshape(node: NodeView, inputs: list):
    data, shape = np.asarray(inputs[0]), _ints(inputs[1])
    if not node.attr("allowzero", 0):
        if any(d == 0 and i >= data.ndim for i, d in enumerate(shape)):
            return None
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [data.reshape(shape)]


def _transpose(node: NodeView, inputs: list):
    data = np.asarray(inputs[0])
    perm = node.attr("perm")
    return [np.transpose(data, perm if perm is not None else None)]


def _constant_of_shape(node: NodeView, inputs: list):
    value = node.attr("value")
    value = np.zeros(1, dtype=np.float32) if value is None else np.asarray(value)
    if value.size != 1 or value.dtype.name not in NUMERIC:
        return None
    shape = _ints(inputs[0])
    if any(d < 0 for d in shape):
        return None
    return [np.full(shape, value.reshape(-1)[0], dtype=value.dtype)]


def _tile(node: NodeView, inputs: list):
    data, repeats = np.asarray(inputs[0]), _ints(inputs[1])
    if len(repeats) != data.ndim or any(r < 0 for r in repeats):
        return None
    return [np.tile(data, repeats)]


def _gather(node: NodeView, inputs: list):
    data, indices = np.asarray(inputs[0]), np.asarray(inputs[1])
    axis = node.attr("axis", 0)
    if indices.dtype.name not in ("int32", "int64") or not -data.ndim <= axis < data.ndim:
        return None
    return [np.take(data, indices, axis=axis)]


def _shape(node: NodeView, inputs: list):
    shape = np.asarray(inputs[0]).shape
    return [np.array(shape[slice(node.attr("start", 0), node.attr("end"))], dtype=np.int64)]


def _dequantize(node: NodeView, inputs: list):
    x, scale = np.asarray(inputs[0]), np.asarray(inputs[1])
    zero = np.asarray(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else None
    axis = node.attr("axis", 1)
    if node.attr("block_size", 0) or node.attr("output_dtype", 0) or scale.dtype != np.float32:
        return None
    if x.dtype.name not in ("int8", "uint8", "int16", "uint16", "int32") or (
        zero is not None and zero.dtype != x.dtype
    ):
        return None

    def along_axis(value: np.ndarray) -> np.ndarray:
        if value.ndim == 0:
            return value
        if value.ndim != 1 or not -x.ndim <= axis < x.ndim or value.size != x.shape[axis]:
            raise ValueError("not a per-tensor or per-axis parameter")
        dims = [1] * x.ndim
        dims[axis] = value.size
        return value.reshape(dims)

    shifted = x.astype(np.float32) - along_axis(zero) if zero is not None else x.astype(np.float32)
    return [(shifted * along_axis(scale)).astype(np.float32)]


def _unsqueeze(node: NodeView, inputs: list):
    if len(inputs) != 2 or inputs[1] is None:
        return None
    data, axes = np.asarray(inputs[0]), [int(a) for a in np.asarray(inputs[1]).reshape(-1)]
    rank = data.ndim + len(axes)
    normalised = sorted(a % rank for a in axes)
    if len(set(normalised)) != len(axes) or any(not -rank <= a < rank for a in axes):
        return None
    return [np.expand_dims(data, tuple(normalised))]


def _squeeze(node: NodeView, inputs: list):
    data = np.asarray(inputs[0])
    if len(inputs) < 2 or inputs[1] is None:
        return [np.squeeze(data)]
    axes = [int(a) for a in np.asarray(inputs[1]).reshape(-1)]
    if any(not -data.ndim <= a < data.ndim or data.shape[a] != 1 for a in axes):
        return None
    return [np.squeeze(data, axis=tuple(a % data.ndim for a in axes))]


def _concat(node: NodeView, inputs: list):
    arrays = [np.asarray(x) for x in inputs if x is not None]
    axis = node.attr("axis")
    if not arrays or axis is None or len({a.ndim for a in arrays}) != 1 or not -arrays[0].ndim <= axis < arrays[0].ndim:
        return None
    if len({a.dtype for a in arrays}) != 1:
        return None
    return [np.concatenate(arrays, axis=axis % arrays[0].ndim)]


def _slice(node: NodeView, inputs: list):
    """Positive steps only: there Python's clamping of start and end is ONNX's."""
    data = np.asarray(inputs[0])
    starts, ends = (np.asarray(inputs[i]).reshape(-1) for i in (1, 2))
    axes = np.asarray(inputs[3]).reshape(-1) if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
    steps = np.asarray(inputs[4]).reshape(-1) if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts))
    if not len(starts) == len(ends) == len(axes) == len(steps) or np.any(steps <= 0):
        return None
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if not -data.ndim <= axis < data.ndim or index[int(axis) % data.ndim] != slice(None):
            return None
        index[int(axis) % data.ndim] = slice(int(start), int(end), int(step))
    return [data[tuple(index)]]


_HANDLERS = {
    "Constant": _constant,
    "Identity": _identity,
    "Add": _elementwise(np.add),
    "Sub": _elementwise(np.subtract),
    "Mul": _elementwise(np.multiply),
    "Div": _elementwise(_divide),
    "Cast": _cast,
    "Expand": _expand,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "ConstantOfShape": _constant_of_shape,
    "Tile": _tile,
    "Gather": _gather,
    "Shape": _shape,
    "DequantizeLinear": _dequantize,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
}
