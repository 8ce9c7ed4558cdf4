"""Running a lowered graph: planned native segments, with reference fallback nodes between them.

Subclasses (cpu, opencl) supply the executor for one segment plan. This module owns the
per-shape plan cache, the fallback nodes and the order of steps.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator

from hamr.errors import KernelError
from hamr.lowering.partition import Item
from hamr.targets.native.assemble import Lowered, Segment
from hamr.targets.native.node_view import captured_names
from hamr.targets.native.plan import SegmentPlan, make_plan, materialise_constants, plan_key
from hamr.targets.reference.overrides import OVERRIDES


class FallbackNode:
    """One node run by onnx.reference, built once (outer-scope names become inputs)."""

    def __init__(self, item: Item, model: ir.Model):
        node = item.node.node
        self.name = item.node.name
        self.op = item.node.op
        proto = ir.serde.serialize_node(node)
        self.inputs = [i for i in item.node.inputs]
        captured = sorted(captured_names(node) - set(self.inputs))
        self.feeds = [i for i in self.inputs if i] + captured
        known = {v.name: v for v in node.inputs if v is not None}
        graph = onnx.helper.make_graph(
            [proto], "fallback",
            [onnx.helper.make_value_info(n, _type_of(known.get(n))) for n in self.feeds],
            [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in item.node.outputs],
        )
        opsets = [onnx.helper.make_opsetid(d, v) for d, v in model.opset_imports.items()]
        functions = [ir.serde.serialize_function(f) for f in model.functions.values()]
        mini = onnx.helper.make_model(graph, opset_imports=opsets, functions=functions)
        self.outputs = list(item.node.outputs)
        self.evaluator = ReferenceEvaluator(mini, new_ops=OVERRIDES)

    def run(self, env: dict[str, Any], device: str) -> None:
        try:
            results = self.evaluator.run(None, {n: env[n] for n in self.feeds})
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise KernelError(
                f"node '{self.name}' ({self.op}) failed on {device} [reference fallback]: {detail}",
                node=self.name, device=device,
            ) from exc
        for name, value in zip(self.outputs, results):
            env[name] = value if not isinstance(value, np.generic) else np.asarray(value)


def _type_of(value: ir.Value | None) -> onnx.TypeProto:
    """The element type where known: function ops (GroupNormalization...) expand by input types."""
    if value is None or value.dtype is None or not isinstance(value.type, ir.TensorType):
        return onnx.TypeProto()
    return onnx.helper.make_tensor_type_proto(value.dtype.value, None)


class NativeProgram:
    target = "native"

    def __init__(self, model: ir.Model, lowered: Lowered, device: str):
        self.device = device
        self.lowered = lowered
        self.opsets = dict(model.opset_imports)
        initializers = {name: v.const_value.numpy() for name, v in model.graph.initializers.items()}
        self.weights = materialise_constants(lowered, initializers, self.opsets)
        self.output_names = [v.name for v in model.graph.outputs]
        self.steps = [
            FallbackNode(step, model) if isinstance(step, Item) else step for step in lowered.steps
        ]
        self.plans: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def plan(self, segment: Segment, env: dict) -> Any:
        key = (segment.index,) + plan_key(segment, env)
        executor = self.plans.get(key)
        if executor is None:
            plan = make_plan(self.lowered, segment, env, self.weights, self.opsets, self.device, self.alignment)
            executor = self.prepare(plan)
            self.plans[key] = executor
        return executor

    alignment = 64

    def prepare(self, plan: SegmentPlan) -> Any:
        raise NotImplementedError

    def execute(self, executor: Any, env: dict) -> None:
        raise NotImplementedError

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        env: dict[str, Any] = dict(self.weights)
        env.update(feeds)
        with self._lock:
            for step in self.steps:
                if isinstance(step, Segment):
                    self.execute(self.plan(step, env), env)
                else:
                    step.run(env, self.device)
        return [np.copy(env[name]) if name in self.weights or name in feeds else env[name] for name in self.output_names]
