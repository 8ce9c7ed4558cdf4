"""What graph rewrites share: constants known now, producers of a kind, fresh names, value replacement."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain
from hamr.ir.onnx_reference.kernels import NONDETERMINISTIC


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value known now: an initializer or a `Constant` node's tensor."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    node = value.producer()
    if node is not None and node.op_type == "Constant" and is_onnx_domain(node.domain):
        attr = node.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            return attr.as_tensor().numpy()
    return None


def known_at_load(value: ir.Value, graph: ir.Graph, memo: dict, depth: int = 0) -> bool:
    """Computed from weights only (what the targets evaluate once when a program loads)."""
    if value.const_value is not None or value.name in graph.initializers:
        return True
    if value.name in memo:
        return memo[value.name]
    node = value.producer()
    known = (
        depth < 64
        and node is not None
        and node.graph is graph
        and is_onnx_domain(node.domain)
        and node.op_type not in NONDETERMINISTIC
        and not any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values())
        and all(i is None or known_at_load(i, graph, memo, depth + 1) for i in node.inputs)
    )
    memo[value.name] = known
    return known


def producer(value: ir.Value | None, *ops: str) -> ir.Node | None:
    """The node of onnx's domain, one of `ops`, that makes value."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type not in ops or not is_onnx_domain(node.domain):
        return None
    return node


def only_feeds(chain: list[ir.Node], start: ir.Value, end: ir.Value) -> bool:
    """Every value the chain makes, but `end`, is used only inside the chain; `start` comes from outside it."""
    inside = {id(n) for n in chain}
    if start.producer() is not None and id(start.producer()) in inside:
        return False
    for node in chain:
        for out in node.outputs:
            if out is end:
                continue
            if out.is_graph_output() or any(id(use.node) not in inside for use in out.uses()):
                return False
    return True


def replace_value(old: ir.Value, new: ir.Value) -> None:
    """Every use of old (a graph output included, which keeps its name) reads new instead."""
    if old.is_graph_output():
        name = old.name
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        old.name = None
        new.name = name
    else:
        old.replace_all_uses_with(new)


class FreshNames:
    """Names not yet taken in a graph, and initializers registered under them."""

    def __init__(self, graph: ir.Graph):
        self.graph = graph
        self.taken = {n.name for n in graph} | {v.name for n in graph for v in n.outputs} | set(graph.initializers)
        self.taken |= {v.name for v in graph.inputs}

    def fresh(self, name: str) -> str:
        candidate, n = name, 0
        while candidate in self.taken:
            n += 1
            candidate = f"{name}_{n}"
        self.taken.add(candidate)
        return candidate

    def initializer(self, name: str, array: np.ndarray) -> ir.Value:
        value = ir.Value(name=self.fresh(name), const_value=ir.tensor(array))
        self.graph.register_initializer(value)
        return value
