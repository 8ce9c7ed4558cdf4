"""Values of the constant nodes computed at load, with NumPy where the op is simple.

Control-flow bodies hold hundreds of such nodes (silero-vad: 548 Constants, 98 Slices, 42 Concats, 28
Unsqueezes); running each through onnx.reference builds one evaluator per node. `evaluate` returns
None for anything it does not handle, and the caller evaluates that node with onnx.reference.
"""

from __future__ import annotations

import numpy as np

from hamr.ir.node_view import NodeView


def evaluate(node: NodeView, inputs: list) -> list[np.ndarray] | None:
    if node.node.domain not in ("", "ai.onnx"):
        return None
    handler = _HANDLERS.get(node.op)
    return None if handler is None else handler(node, inputs)


def _constant(node: NodeView, inputs: list):
    if set(node.node.attributes) != {"value"}:
        return None
    return [np.asarray(node.attr("value"))]


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


_HANDLERS = {"Constant": _constant, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat": _concat, "Slice": _slice}
