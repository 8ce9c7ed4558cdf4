"""What cpu and opencl share as targets: capability, placement, lowering and memory report."""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref

import numpy as np
import onnx_ir as ir

from hamr.ir.node_view import NodeView, value_shape
from hamr.ir.signature import signature_of
from hamr.ops.registry import require_registered
from hamr.plugins import REFERENCE_TARGET
from hamr.targets.native.assemble import Lowered, assemble
from hamr.targets.native.ops import lowering_for
from hamr.targets.native.ops.custom import CustomLowering, lowering_target
from hamr.targets.native.partition import Partition, partition
from hamr.targets.native.plan import make_plan, materialise_constants
from hamr.targets.native.render.base import Renderer
from hamr.targets.reference import ReferenceTarget

log = logging.getLogger(__name__)
REFERENCE = ReferenceTarget()
# What loading derives from a model, shared by every program of it in this process (sessions of one
# executable, and the programs a migrating session moves between): lowerings per target, their
# generated sources, and the weights computed at load (dequantized weights...), which are device-neutral.
_LOADED: weakref.WeakKeyDictionary[ir.Model, dict] = weakref.WeakKeyDictionary()
_LOADED_LOCK = threading.Lock()


def loaded(model: ir.Model, key: tuple, make):
    """`make()` once per (model, key) in this process."""
    with _LOADED_LOCK:
        memo = _LOADED.setdefault(model, {})
        if key in memo:
            return memo[key]
    value = make()
    with _LOADED_LOCK:
        return memo.setdefault(key, value)


class NativeTarget:
    name = "native"
    devices: tuple[str, ...] = ()
    renderer: Renderer  # the dialect this target's source is written in

    def accepts(self, node: NodeView, lowering) -> str | None:
        """Target-specific veto on top of the shared lowerings (None: accepted).

        A custom op runs natively only on a target it brings a kernel for, and a lowering
        with hand-written kernels only where it has a source in this target's dialect.
        Subclasses that override this call it first.
        """
        if isinstance(lowering, CustomLowering):
            return lowering.veto(self.name, node)
        dialects = lowering.dialects(node)
        if dialects is not None and self.renderer.dialect not in dialects:
            return f"no {self.renderer.dialect} kernel for {node.op}"
        return None

    def supports_natively(self, node: ir.Node, opset: int) -> bool:
        lowering = lowering_for(node.domain, node.op_type)
        view = NodeView(node, opset)
        return lowering is not None and lowering.check(view) is None and self.accepts(view, lowering) is None

    def supports(self, node: ir.Node, opset: int, functions: frozenset = frozenset()) -> bool:
        """Runs here natively, or through the reference fallback."""
        return self.supports_natively(node, opset) or REFERENCE.supports(node, opset, functions)

    def lower(self, model: ir.Model) -> tuple[Partition, Lowered]:
        require_registered(model)  # at load, a custom op of the model may be missing from this process
        with lowering_target(self.name):
            part = partition(model, self.accepts)
            return part, assemble(model, part)

    def lowered_for_load(self, model: ir.Model) -> tuple[Lowered, str]:
        """The lowering and generated source of a loaded model (memoised: loading twice derives nothing twice)."""

        def make():
            lowered = self.lower(model)[1]
            return lowered, self.source(lowered)

        return loaded(model, (self.name, "lowered"), make)

    def source(self, lowered: Lowered) -> str:
        return self.renderer.source(lowered)

    def placement(self, part: Partition) -> dict[str, str]:
        return {
            node: (self.name if where != "fallback" else REFERENCE_TARGET) for node, where in part.placement.items()
        }

    def describe(self, model: ir.Model, part: Partition, lowered: Lowered, source: str) -> dict:
        fallback = {item.node.name: item.node.op for item in part.items if item.kind == "fallback"}
        launches = [(launch.name, launch.kernel.label) for s in lowered.segments for launch in s.launches]
        return {
            "target": self.name,
            "kind": "native",
            "placement": self.placement(part),
            "planned_on_host": sorted(n for n, w in part.placement.items() if w == "host"),
            "computed_at_load": sorted(n for n, w in part.placement.items() if w == "constant"),
            "fallback": {name: {"op": op, "reason": part.reasons.get(name, "")} for name, op in fallback.items()},
            "kernels": [{"name": n, "ops": label} for n, label in launches],
            "segments": len(lowered.segments),
            "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
            "memory": estimate_memory(model, lowered),
        }


def estimate_memory(model: ir.Model, lowered: Lowered) -> dict | None:
    """Planned peak for example shapes (symbolic dims: 1 for batch-like names, else 16)."""
    from hamr.ir.example_feeds import example_feeds

    if any(segment.keyed for segment in lowered.segments):
        return None  # sizes depend on input values that invented inputs would only guess
    try:
        feeds = example_feeds(signature_of(model.graph))
    except ValueError:
        return None
    dims: dict[str, int] = {}
    for value in model.graph.inputs:
        for d, size in zip(value_shape(value) or (), feeds[value.name].shape):
            if isinstance(d, str):
                dims[d] = int(size)
    initializers = {name: v.const_value.numpy() for name, v in model.graph.initializers.items()}
    weights = materialise_constants(lowered, initializers, dict(model.opset_imports))
    values = {v.name: v for n in model.graph for v in n.outputs}
    env: dict = dict(weights)
    env.update(feeds)
    arena = 0
    escaping = 0
    try:
        for segment in lowered.segments:
            for name in segment.ext_inputs:
                if name not in env:
                    shape = [dims.get(d, d) if isinstance(d, str) else d for d in value_shape(values[name]) or [None]]
                    if any(not isinstance(d, int) for d in shape):
                        return None
                    env[name] = np.empty(shape, dtype=lowered.dtypes[name])
            plan = make_plan(lowered, segment, env, weights, dict(model.opset_imports), "planner")
            arena = max(arena, plan.arena_bytes)
            for slot in plan.slots:
                if slot.kind == "output":
                    env[slot.name] = np.empty(slot.shape, dtype=slot.dtype)
                    escaping += slot.nbytes
            for name in plan.host_outputs:
                env[name] = plan.ctx.values[name]
    except Exception as exc:  # a plan for invented inputs may not exist (data-dependent shapes)
        log.debug("memory estimate skipped: %s", exc)
        return None
    return {"dims": dims, "arena_bytes": arena, "io_bytes": escaping, "peak_bytes": arena + escaping}
