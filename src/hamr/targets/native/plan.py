"""Plans: one segment specialised to concrete input shapes, computed once per shape key.

A plan holds every value's shape, the host-evaluated shape arithmetic, each kernel's
parameters (one int64 array) and the memory plan. Executors (cpu, opencl) turn it into
pointers or device buffers; running a planned segment needs no Python per kernel on
the cpu target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from hamr.errors import KernelError
from hamr.ir.dtypes import itemsize
from hamr.ir.onnx_reference.kernels import evaluate_node
from hamr.targets.native.assemble import Lowered, Segment
from hamr.targets.native.memory import Buffer, plan_memory
from hamr.targets.native.ops import lowering_for
from hamr.targets.native.ops.base import VARIABLE_PARAMS, numel


class PlanContext:
    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.shapes: dict[str, tuple] = {}
        self.values: dict[str, np.ndarray] = {}

    def shape(self, name: str) -> tuple:
        if name in self.shapes:
            return self.shapes[name]
        return tuple(self.weights[name].shape)

    def value(self, name: str) -> np.ndarray:
        if name in self.values:
            return self.values[name]
        return self.weights[name]


@dataclass
class Slot:
    name: str
    kind: str  # input | weight | const | output | arena
    shape: tuple
    dtype: str
    offset: int = 0  # arena offset for kind == arena

    @property
    def nbytes(self) -> int:
        return numel(self.shape) * itemsize(self.dtype)


@dataclass
class SegmentPlan:
    segment: Segment
    ctx: PlanContext
    params: np.ndarray  # int64: [offset of each launch's params] + params
    launch_params: list[list[int]]
    slots: list[Slot]
    arena_bytes: int
    outputs: list[str] = field(default_factory=list)  # escaping values written by kernels
    host_outputs: list[str] = field(default_factory=list)  # escaping values computed while planning
    alignment: int = 64  # of every arena offset


def plan_key(segment: Segment, env: dict[str, np.ndarray]) -> tuple:
    key = tuple(env[name].shape for name in segment.ext_inputs)
    if segment.keyed:
        key += tuple(env[name].tobytes() for name in segment.keyed)
    return key


def make_plan(
    lowered: Lowered, segment: Segment, env: dict, weights: dict, opsets: dict, device: str, alignment: int = 64
) -> SegmentPlan:
    ctx = PlanContext(weights)
    for name in segment.ext_inputs:
        ctx.shapes[name] = tuple(env[name].shape)
    for name in segment.keyed:
        ctx.values[name] = np.asarray(env[name])
    for item in segment.items:
        for node in item.nodes:
            try:
                _plan_node(item.kind, node, ctx, opsets)
            except KernelError:
                raise
            except Exception as exc:
                raise KernelError(
                    f"node '{node.name}' ({node.op}) cannot be planned on {device}: {type(exc).__name__}: {exc}",
                    node=node.name,
                    device=device,
                ) from exc
    launch_params = []
    for launch in segment.launches:
        values = [int(v) for v in launch.kernel.params(ctx)]
        if launch.kernel.n_params != VARIABLE_PARAMS and len(values) != launch.kernel.n_params:
            raise AssertionError(f"{launch.name}: {len(values)} params, declared {launch.kernel.n_params}")
        launch_params.append(values)
    header = []
    flat: list[int] = []
    offset = len(segment.launches)
    for values in launch_params:
        header.append(offset)
        flat += values
        offset += len(values)
    params = np.array(header + flat, dtype=np.int64)

    escaping = set(segment.escaping)
    produced = {o for launch in segment.launches for o in launch.kernel.outputs}
    slots = []
    for name in segment.slots:
        dtype = lowered.dtypes[name]
        if name in lowered.weights:
            kind = "weight"
        elif name in ctx.values and name not in segment.ext_inputs:
            kind = "const"
        elif name in segment.ext_inputs:
            kind = "input"
        elif name in escaping:
            kind = "output"
        else:
            kind = "arena"
        slots.append(Slot(name, kind, tuple(ctx.shape(name)), dtype))
    arena_bytes = _plan_arena(segment, slots, alignment)
    outputs = [o for o in segment.escaping if o in produced]
    host_outputs = [o for o in segment.escaping if o not in produced and o in ctx.values]
    return SegmentPlan(segment, ctx, params, launch_params, slots, arena_bytes, outputs, host_outputs, alignment)


def _plan_node(kind: str, node, ctx: PlanContext, opsets: dict) -> None:
    lowering = lowering_for(node.domain, node.op)
    if kind == "host":
        if lowering is not None and lowering.kind == "host":
            results = lowering.host(node, ctx)
        else:
            proto = ir.serde.serialize_node(node.node)
            results = evaluate_node(proto, opsets, [ctx.value(i) if i else None for i in node.inputs])
        for name, value in zip(node.outputs, results):
            value = np.asarray(value)
            ctx.values[name] = value
            ctx.shapes[name] = tuple(value.shape)
        return
    for name, shape in zip(node.outputs, lowering.infer(node, ctx)):
        ctx.shapes[name] = tuple(int(d) for d in shape)


def _plan_arena(segment: Segment, slots: list[Slot], alignment: int) -> int:
    index = {s.name: i for i, s in enumerate(slots)}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    inplace: dict[str, str] = {}
    for step, launch in enumerate(segment.launches):
        k = launch.kernel
        for name in k.inputs:
            root = segment.alias.get(name, name)
            last[root] = step
        for name in k.outputs:
            root = segment.alias.get(name, name)
            first.setdefault(root, step)
            last[root] = max(last.get(root, step), step)
        input_roots = [segment.alias.get(n, n) for n in k.inputs]
        for out_i, in_i in k.inplace:
            if input_roots.count(input_roots[in_i]) > 1:
                continue
            inplace[segment.alias.get(k.outputs[out_i], k.outputs[out_i])] = segment.alias.get(
                k.inputs[in_i], k.inputs[in_i]
            )
    buffers = [Buffer(s.name, s.nbytes, first.get(s.name, 0), last.get(s.name, 0)) for s in slots if s.kind == "arena"]
    valid = {b.name for b in buffers}
    inplace = {
        o: i
        for o, i in inplace.items()
        if o in valid and i in valid and slots[index[o]].nbytes == slots[index[i]].nbytes
    }
    size = plan_memory(buffers, inplace, alignment)
    for b in buffers:
        slots[index[b.name]].offset = b.offset
    return size
