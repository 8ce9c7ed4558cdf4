"""Running a lowered graph: planned native segments, with reference fallback nodes and control nodes between them.

Subclasses (cpu, opencl) supply the executor for one segment plan. This module owns the
per-shape plan cache, the fallback nodes, the subgraphs of control nodes and the order of steps.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator

from hamr.errors import KernelError, first_line
from hamr.ir.node_view import captured_names
from hamr.ir.onnx_reference.overrides import reference_ops
from hamr.profiling import Profile, now
from hamr.targets.base import HostMemory
from hamr.targets.native.assemble import Control, Lowered, Segment
from hamr.targets.native.control import Body, ControlNode, Scope
from hamr.targets.native.partition import Item
from hamr.targets.native.plan import SegmentPlan, make_plan, plan_key
from hamr.targets.native.target import loaded
from hamr.targets.native.weights import READS_ALL, Unread, materialise_constants


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
            [proto],
            "fallback",
            [onnx.helper.make_value_info(n, _type_of(known.get(n))) for n in self.feeds],
            [onnx.helper.make_value_info(n, onnx.TypeProto()) for n in item.node.outputs],
        )
        opsets = [onnx.helper.make_opsetid(d, v) for d, v in model.opset_imports.items()]
        functions = [ir.serde.serialize_function(f) for f in model.functions.values()]
        self.mini = onnx.helper.make_model(graph, opset_imports=opsets, functions=functions)
        self.outputs = list(item.node.outputs)
        self.evaluator: ReferenceEvaluator | None = None  # built on first run: a branch never taken costs no load time

    def run(self, env: dict[str, Any], device: str) -> None:
        try:
            if self.evaluator is None:
                self.evaluator = ReferenceEvaluator(self.mini, new_ops=reference_ops(self.mini))
            results = self.evaluator.run(None, {n: env[n] for n in self.feeds})
        except Exception as exc:
            detail = first_line(exc, with_type=False)
            raise KernelError(
                f"node '{self.name}' ({self.op}) failed on {device} [reference fallback]: {detail}",
                node=self.name,
                device=device,
            ) from exc
        for name, value in zip(self.outputs, results):
            env[name] = value if not isinstance(value, np.generic) else np.asarray(value)


def _initializers(model: ir.Model) -> dict[str, np.ndarray]:
    return {name: v.const_value.numpy() for name, v in model.graph.initializers.items()}


def _type_of(value: ir.Value | None) -> onnx.TypeProto:
    """The element type where known: function ops (GroupNormalization...) expand by input types."""
    if value is None or value.dtype is None or not isinstance(value.type, ir.TensorType):
        return onnx.TypeProto()
    return onnx.helper.make_tensor_type_proto(value.dtype.value, None)


class NativeProgram(HostMemory):
    """Steps of a lowered graph on one device.

    Plans (per segment and input shapes) are shared by every thread; executors (a plan's
    buffers and launch state) are checked out for one run at a time, so concurrent runs
    never share buffers. Values in `env` are NumPy arrays or this program's device
    values (`is_device_value`); they cross to the host only where a fallback node or a
    shape key reads them, or where the caller wants a host output.
    """

    target = "native"
    alignment = 128  # bytes; a multiple of common OpenCL base-address alignments, so plans move between devices

    def __init__(self, model: ir.Model, lowered: Lowered, device: str, unread: Unread = READS_ALL):
        """`unread`: weights no step of this program reads once their derived copies are made, and copies none
        reads."""
        self.device = device
        self.lowered = lowered
        self.opsets = dict(model.opset_imports)
        self.weights = loaded(
            model,
            ("weights", tuple(n.name for n in lowered.constants), tuple(lowered.derived), unread.key()),
            lambda: materialise_constants(lowered, _initializers(model), self.opsets, unread),
        )
        self.output_names = [v.name for v in model.graph.outputs]
        self.steps = self._steps(lowered, model)
        self.plans: dict[tuple, SegmentPlan] = {}
        self._idle: dict[tuple, list] = {}  # plan key -> executors not in use
        self._lock = threading.Lock()
        self._fallback_lock = threading.Lock()  # onnx.reference op instances are not re-entrant

    def _steps(self, lowered: Lowered, model: ir.Model) -> list:
        steps = []
        for step in lowered.steps:
            if isinstance(step, Item):
                step = FallbackNode(step, model)
            elif isinstance(step, Control):
                bodies = {name: Body(body, self._steps(body, model)) for name, body in step.bodies.items()}
                step = ControlNode(step, bodies)
            steps.append(step)
        return steps

    def adopt_plans(self, other: Any) -> int:
        """Reuse the shape plans of a program of the same executable (a migration): plans are device-neutral."""
        mine = {segment.index: segment for segment in self.lowered.all_segments}
        adopted = 0
        for key, plan in list(getattr(other, "plans", {}).items()):
            segment = mine.get(plan.segment.index)
            if (
                segment is not None
                and plan.alignment % self.alignment == 0
                and _shape_of(plan.segment) == _shape_of(segment)
            ):
                self.plans.setdefault(key, dataclasses.replace(plan, segment=segment))
                adopted += 1
        return adopted

    # -- plans and executors --

    def plan(self, segment: Segment, env: dict) -> Any:
        """An executor for this segment and these shapes, checked out for the caller alone."""
        key = (segment.index,) + plan_key(segment, env)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return key, idle.pop()
            plan = self.plans.get(key)
        if plan is None:
            plan = make_plan(self.lowered, segment, env, self.weights, self.opsets, self.device, self.alignment)
            with self._lock:
                plan = self.plans.setdefault(key, plan)
        return key, self.prepare(plan)

    def release(self, key: tuple, executor: Any) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(executor)

    def prepare(self, plan: SegmentPlan) -> Any:
        raise NotImplementedError

    def execute(self, executor: Any, env: dict, profile: Profile | None = None) -> None:
        raise NotImplementedError

    def run(
        self, feeds: dict[str, Any], keep_on_device: frozenset = frozenset(), profile: Profile | None = None
    ) -> list[Any]:
        env: dict[str, Any] = Scope(feeds, self.weights)  # the weights are read through, never copied per run
        held = []
        try:
            self._run_steps(self.steps, env, held, profile)
            return [self._output(env, name, name in keep_on_device, feeds, profile) for name in self.output_names]
        finally:
            for key, executor in held:
                self.release(key, executor)

    def _run_steps(self, steps: list, env: dict, held: list, profile: Profile | None) -> None:
        for step in steps:
            if isinstance(step, Segment):
                for name in step.keyed:
                    env[name] = self._host(env[name], name, profile)
                key, executor = self.plan(step, env)
                held.append((key, executor))
                self.execute(executor, env, profile)
            elif isinstance(step, ControlNode):
                self._run_control(step, env, profile)
            else:
                self._run_fallback(step, env, profile)

    def _run_control(self, step: ControlNode, env: dict, profile: Profile | None) -> None:
        def run_body(body: Body, outer: dict, feeds: dict) -> list:
            inner = Scope(feeds, outer)
            held: list = []
            try:
                self._run_steps(body.steps, inner, held, profile)
                # an executor's device buffers serve its next run: what leaves the body is copied out first
                return [
                    self.copy_device(inner[name])
                    if held and self.is_device_value(inner[name]) and name not in outer and name not in feeds
                    else inner[name]
                    for name in body.outputs
                ]
            finally:
                for key, executor in held:
                    self.release(key, executor)

        def host(value: Any, name: str) -> Any:
            return self._host(value, name, profile)

        step.run(env, run_body, host, self.device)

    def _run_fallback(self, step: FallbackNode, env: dict, profile: Profile | None) -> None:
        for name in step.feeds:
            env[name] = self._host(env[name], name, profile)
        start = now()
        with self._fallback_lock:
            step.run(env, self.device)
        if profile is not None:
            profile.add(step.name, "fallback", start, now() - start, "reference", self.device, step.op)

    def _host(self, value: Any, name: str, profile: Profile | None) -> Any:
        """`value` on the host; a read-back from the device is profiled as a download."""
        if not self.is_device_value(value):
            return value
        start = now()
        value = self.to_host(value)
        if profile is not None:
            profile.add(name, "download", start, now() - start, self.target, self.device)
        return value

    def _output(self, env: dict, name: str, on_device: bool, feeds: dict, profile: Profile | None) -> Any:
        value = env[name]
        # the caller must not get our own array, nor a feed a branch passed through
        shared = name in self.weights or name in feeds or any(value is fed for fed in feeds.values())
        if on_device:
            if self.is_device_value(value):
                return self.copy_device(value)
            return self.to_device(value) if shared or not self.host_is_device else value
        value = self._host(value, name, profile)
        return _copied(value) if shared else value


def _copied(value: Any) -> Any:
    """A copy of a tensor, or of a sequence's tensors (an optional or a sequence stays what it is)."""
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return np.copy(value) if isinstance(value, np.ndarray) else value


def _shape_of(segment: Segment) -> tuple:
    """What a plan depends on: the launches, their parameter counts and the buffer slots."""
    launches = tuple((launch.name, launch.kernel.label, launch.kernel.n_params) for launch in segment.launches)
    return launches, tuple(segment.slots)
