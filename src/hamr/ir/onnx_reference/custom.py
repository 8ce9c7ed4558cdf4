"""Registered custom ops as onnx.reference op classes, for every ReferenceEvaluator hamr builds.

Each class is named after the op and carries its domain (``op_domain``), which is how
``ReferenceEvaluator(new_ops=...)`` finds it; ``_run`` passes the node's attributes to the
op's NumPy reference. Only the ops a model uses are looked up, so models of onnx's own
domains never read the plugins.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import onnx
from onnx.reference.op_run import OpRun

from hamr.ops.definition import STANDARD_DOMAINS, CustomOp, python_value
from hamr.ops.registry import lookup

_classes: dict[CustomOp, type[OpRun]] = {}
_lock = threading.Lock()


def op_run_class(op: CustomOp) -> type[OpRun]:
    with _lock:
        cls = _classes.get(op)
        if cls is None:

            def _run(self, *inputs, **attributes):
                given = {name: python_value(value) for name, value in attributes.items()}
                return op.evaluate(list(inputs), given, len(self.onnx_node.output))

            cls = type(
                op.name,
                (OpRun,),
                {
                    "op_domain": op.domain,
                    "op_schema": None,  # never borrow the schema of a standard op of the same name
                    "_run": _run,
                    "__doc__": op.doc or f"custom op {op.label}",
                },
            )
            _classes[op] = cls
        return cls


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _nodes(g)


def custom_op_runs(model: onnx.ModelProto) -> list[type[OpRun]]:
    """Op classes for the registered custom ops that `model` (its graphs and functions) uses."""
    nodes = list(_nodes(model.graph))
    for function in model.functions:
        nodes += list(function.node)
    used = sorted({(n.domain, n.op_type) for n in nodes if n.domain not in STANDARD_DOMAINS})
    ops = [lookup(domain, name) for domain, name in used]
    return [op_run_class(op) for op in ops if op is not None]
