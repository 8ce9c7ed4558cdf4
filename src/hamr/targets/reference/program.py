"""Interprets the portable graph node by node with onnx.reference's op implementations.

ReferenceEvaluator builds the op instances (so subgraphs, functions and every opset
version work as onnx defines them); the loop here runs them, frees each intermediate
after its last use, and names the failing node.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator

from hamr.errors import KernelError, first_line
from hamr.ir.onnx_reference.overrides import reference_ops
from hamr.profiling import Profile, now
from hamr.targets.base import HostMemory


class ReferenceProgram(HostMemory):
    target = "reference"

    def __init__(self, model: ir.Model, device: str = "cpu"):
        self.device = device
        graph = model.graph
        self.weights = {name: v.const_value.numpy() for name, v in graph.initializers.items()}
        proto = _proto_without_weights(model)
        self.evaluator = ReferenceEvaluator(proto, new_ops=reference_ops(proto))
        self.nodes = list(self.evaluator.rt_nodes_)
        self.output_names = [v.name for v in graph.outputs]
        self.releases = _release_plan(self.nodes, set(self.output_names), _captured_names(graph))
        self._lock = threading.Lock()  # some onnx.reference ops keep per-call state

    def run(
        self, feeds: dict[str, Any], keep_on_device: frozenset = frozenset(), profile: Profile | None = None
    ) -> list[Any]:
        results: dict[str, Any] = {"": None}
        results.update(self.weights)
        results.update(feeds)
        with self._lock:
            for index, node in enumerate(self.nodes):
                inputs = [results[name] for name in node.input]
                start = now()
                try:
                    if node.need_context():
                        outputs = node.run(*inputs, context=results)
                    else:
                        outputs = node.run(*inputs)
                except Exception as exc:
                    name = node.onnx_node.name or node.op_type
                    detail = first_line(exc, with_type=False)
                    raise KernelError(
                        f"node '{name}' ({node.op_type}) failed on {self.device} [reference]: {detail}",
                        node=name,
                        device=self.device,
                    ) from exc
                if profile is not None:
                    label = node.onnx_node.name or node.op_type
                    profile.add(label, "kernel", start, now() - start, "reference", self.device, node.op_type)
                for name, value in zip(node.output, outputs):
                    results[name] = value
                for name in self.releases[index]:
                    results.pop(name, None)
        return [
            self._output(results[name], name in keep_on_device, name in feeds or name in self.weights)
            for name in self.output_names
        ]

    def _output(self, value: Any, on_device: bool, shared: bool) -> Any:
        return self.to_device(value) if on_device or shared and isinstance(value, np.ndarray) else value


def _proto_without_weights(model: ir.Model):
    """Serialise the graph structure; the weights stay where they are (memory-mapped)."""
    graph = model.graph
    saved = {name: v.const_value for name, v in graph.initializers.items()}
    placeholder = ir.Tensor(np.zeros((0,), dtype=np.float32))
    try:
        for v in graph.initializers.values():
            v.const_value = placeholder
        proto = ir.to_proto(model)
    finally:
        for name, v in graph.initializers.items():
            v.const_value = saved[name]
    del proto.graph.initializer[:]
    return proto


def _captured_names(graph: ir.Graph) -> set[str]:
    """Names read from inside subgraphs; the loop must keep them alive."""
    names: set[str] = set()
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.graph is not graph:
            names.update(v.name for v in node.inputs if v is not None)
    return names


def _release_plan(nodes, keep: set[str], captured: set[str]) -> list[list[str]]:
    last_use: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            if name:
                last_use[name] = index
    plan: list[list[str]] = [[] for _ in nodes]
    for name, index in last_use.items():
        if name not in keep and name not in captured:
            plan[index].append(name)
    return plan
