"""A compile-time view of one graph node: names, dtypes, symbolic shapes, attributes, constants."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import numpy as np
import onnx_ir as ir

from hamr.ir.signature import numpy_dtype_name

Shape = tuple  # of int | str | None


def value_dtype(value: ir.Value | None) -> str | None:
    if value is None or value.dtype is None or not isinstance(value.type, (ir.TensorType, type(None))):
        return None
    try:
        return numpy_dtype_name(value.dtype)
    except (TypeError, ValueError):
        return None


def value_shape(value: ir.Value | None) -> Shape | None:
    if value is None or value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else (d.value if isinstance(d, ir.SymbolicDim) else None) for d in value.shape)


def value_const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


class NodeView:
    def __init__(self, node: ir.Node, opset: int):
        self.node = node
        self.op = node.op_type
        self.domain = node.domain
        self.name = node.name
        self.opset = opset
        self.inputs = [v.name if v is not None else "" for v in node.inputs]
        self.outputs = [v.name for v in node.outputs]

    def attr(self, name: str, default: Any = None) -> Any:
        attr = self.node.attributes.get(name)
        if attr is None:
            return default
        value = attr.value
        if attr.type == ir.AttributeType.TENSOR:  # isinstance against the runtime Protocol costs ~70 us a call
            return value.numpy()
        if isinstance(value, (list, tuple)):
            return list(value)
        return value

    def has_input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def in_dtype(self, i: int) -> str | None:
        return value_dtype(self.node.inputs[i]) if self.has_input(i) else None

    def out_dtype(self, i: int = 0) -> str | None:
        return value_dtype(self.node.outputs[i])

    def in_shape(self, i: int) -> Shape | None:
        return value_shape(self.node.inputs[i]) if self.has_input(i) else None

    def out_shape(self, i: int = 0) -> Shape | None:
        return value_shape(self.node.outputs[i])

    def in_rank(self, i: int) -> int | None:
        shape = self.in_shape(i)
        return None if shape is None else len(shape)

    def out_rank(self, i: int = 0) -> int | None:
        shape = self.out_shape(i)
        return None if shape is None else len(shape)

    def const(self, i: int) -> np.ndarray | None:
        return value_const(self.node.inputs[i]) if self.has_input(i) else None


def subgraphs(node: ir.Node) -> dict[str, ir.Graph]:
    """The node's graph attributes by name (a GRAPHS attribute's graphs as `name[i]`)."""
    graphs: dict[str, ir.Graph] = {}
    for name, attr in node.attributes.items():
        if attr.type == ir.AttributeType.GRAPH:
            graphs[name] = attr.value
        elif attr.type == ir.AttributeType.GRAPHS:
            graphs.update({f"{name}[{i}]": g for i, g in enumerate(attr.value)})
    return graphs


_outer_memo: contextvars.ContextVar[dict | None] = contextvars.ContextVar("hamr_outer_values_memo", default=None)


@contextlib.contextmanager
def outer_values_memo():
    """Remember `outer_values` per graph while no graph changes (lowering a loaded model): nested
    control flow otherwise walks each inner body once per enclosing level."""
    token = _outer_memo.set({})
    try:
        yield
    finally:
        _outer_memo.reset(token)


def outer_values(graph: ir.Graph) -> dict[str, ir.Value]:
    """Outer-scope values read inside `graph` or its nested subgraphs, by name."""
    memo = _outer_memo.get()
    if memo is None:
        return _outer_values(graph)
    hit = memo.get(id(graph))
    if hit is None or hit[0] is not graph:
        hit = memo[id(graph)] = (graph, _outer_values(graph))
    return hit[1]


def _outer_values(graph: ir.Graph) -> dict[str, ir.Value]:
    defined = {v.name for v in graph.inputs} | set(graph.initializers)
    outer: dict[str, ir.Value] = {}
    for node in graph:
        for v in node.inputs:
            if v is not None and v.name not in defined:
                outer.setdefault(v.name, v)
        for inner in subgraphs(node).values():
            for name, v in outer_values(inner).items():
                if name not in defined:
                    outer.setdefault(name, v)
        defined.update(o.name for o in node.outputs)
    for v in graph.outputs:
        if v.name not in defined:
            outer.setdefault(v.name, v)
    return outer


def captured_names(node: ir.Node) -> set[str]:
    """Outer-scope names read inside the node's subgraphs."""
    names: set[str] = set()
    for g in subgraphs(node).values():
        names.update(outer_values(g))
    return names
