"""Placement (GetCapability per node) and fusion of the portable graph into kernel groups.

Every main-graph node gets one placement:

- ``native``: a lowering of the target runs it (in a kernel group, or as a view);
- ``constant``: depends on weights only (a dequantized weight, say): computed once at load;
- ``host``: shape arithmetic evaluated while planning for concrete input shapes;
- ``control``: ``If``, ``Loop`` or ``Scan``, run on the host side of the program, with each
  subgraph (branch, body) partitioned the same way and run as native code;
- ``fallback``: the reference target runs it, with explicit host transfers around it.

The schedule is a list of items in topological order. Fused groups follow a simple rule
that cannot create cycles: a node joins the group of one of its producers only when all of
its other inputs are ready before that group starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain
from hamr.ir.dtypes import FLOATS, INTEGERS
from hamr.ir.node_view import NodeView, captured_names, outer_values, subgraphs, value_dtype
from hamr.ir.onnx_reference.kernels import NONDETERMINISTIC, has_kernel
from hamr.targets.native.ops import lowering_for
from hamr.targets.native.ops.base import Kernel, Lowering, static_equal
from hamr.targets.native.ops.packing import known_weights, reads_strided, transposed_operands
from hamr.targets.native.widen import CastView, widen

HOST_DTYPES = INTEGERS | {"bool"}
CONTROL_OPS = {"If": 1, "Loop": 1, "Scan": 9}  # op -> the first opset whose form the program runs


@dataclass
class Item:
    kind: str  # "host" | "view" | "group" | "control" | "fallback"
    nodes: list[NodeView]
    group: str = ""  # for groups: "fused" | "kernel" | "anchor"
    kernel: Kernel | None = None  # the lowering's kernel, for "kernel" and "anchor" groups
    bodies: dict[str, Partition] = field(default_factory=dict)  # for "control": attribute -> its subgraph's

    @property
    def node(self) -> NodeView:
        return self.nodes[0]


@dataclass
class Partition:
    items: list[Item]
    placement: dict[str, str]  # node name -> native | constant | host | fallback
    reasons: dict[str, str]  # fallback node name -> why
    keyed: set[str] = field(default_factory=set)  # values whose contents key a plan
    dtypes: dict[str, str] = field(default_factory=dict)  # values in no graph: the f32 copies of widen()
    graph: ir.Graph | None = None
    outer: dict[str, ir.Value] = field(default_factory=dict)  # outer-scope values a subgraph reads

    def walk(self):
        """This partition and those of every subgraph, outermost first."""
        yield self
        for item in self.items:
            for body in item.bodies.values():
                yield from body.walk()

    def fallback_items(self) -> list[Item]:
        return [item for part in self.walk() for item in part.items if item.kind == "fallback"]

    def fallback_ops(self) -> list[str]:
        return sorted({item.node.op for item in self.fallback_items()})


def _has_subgraph(node: ir.Node) -> bool:
    return any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values())


def _runs_as_control(view: NodeView) -> bool:
    """If, Loop or Scan over tensors (sequences and optionals stay with the reference)."""
    if not is_onnx_domain(view.domain) or view.opset < CONTROL_OPS.get(view.op, 10**6):
        return False
    values = list(view.node.outputs)
    for g in subgraphs(view.node).values():
        values += list(g.inputs) + list(g.outputs)
    return all(v.type is None or isinstance(v.type, ir.TensorType) for v in values)


def partition(model: ir.Model, accepts: Callable[[NodeView, Lowering], str | None] | None = None) -> Partition:
    return partition_graph(model.graph, dict(model.opset_imports), accepts)


def partition_graph(
    graph: ir.Graph,
    opsets: dict,
    accepts: Callable[[NodeView, Lowering], str | None] | None = None,
    outer_constants: frozenset[str] | None = None,
) -> Partition:
    """Place the nodes of `graph`. A subgraph (`outer_constants` given: the enclosing scopes' constants) reads
    its outer-scope values as inputs, except those constants, which stay constants."""
    outer = outer_values(graph) if outer_constants is not None else {}
    outer_constants = outer_constants or frozenset()
    views = [NodeView(n, n.version or opsets.get(n.domain, opsets.get("", 1))) for n in graph]
    producer = {out: v for v in views for out in v.outputs}
    values = {v.name: v for v in graph.inputs}
    values.update(outer)
    values.update({o.name: o for n in graph for o in n.outputs})
    graph_inputs = {v.name for v in graph.inputs} | (set(outer) - outer_constants)
    host_known = set(graph.initializers) | (set(outer) & outer_constants)
    placement: dict[str, str] = {}
    reasons: dict[str, str] = {}
    keyed: set[str] = set()
    placed: list[NodeView] = []  # the schedule: the graph's nodes and the Casts around widened ones
    made: dict[str, str] = {}  # dtypes of the f32 copies made so far

    def native_reason(view: NodeView) -> str | None:
        if _has_subgraph(view.node):
            return "has a subgraph"
        lowering = lowering_for(view.domain, view.op)
        if lowering is None:
            return "no lowering"
        reason = lowering.check(view)
        if reason is None and lowering.kind in ("elementwise", "kernel"):
            if any(view.out_rank(i) is None for i, name in enumerate(view.outputs) if name):
                reason = "unknown output rank"
        if reason is None and accepts is not None:
            reason = accepts(view, lowering)
        return reason

    def host_evaluable(view: NodeView) -> bool:
        return (
            is_onnx_domain(view.domain)
            and view.op not in NONDETERMINISTIC
            and not _has_subgraph(view.node)
            and all(value_dtype(o) in HOST_DTYPES for o in view.node.outputs)
            and has_kernel(view.domain, view.op, view.opset)
        )

    def resolve(name: str, depth: int = 0) -> bool:
        """Make `name` known when planning: key on it, or evaluate its producer on the host."""
        if name in host_known:
            return True
        if depth > 64:
            return False
        view = producer.get(name)
        if name in graph_inputs or (view is not None and placement.get(view.name) in ("fallback", "control")):
            if value_dtype(values[name]) in HOST_DTYPES | FLOATS:  # Range's limit, OneHot's depth
                keyed.add(name)
                host_known.add(name)
                return True
            return False
        if view is None or not host_evaluable(view):
            return False
        if all(resolve(i, depth + 1) for i in view.inputs if i):
            placement[view.name] = "host"
            host_known.update(view.outputs)
            return True
        return False

    constants = set(graph.initializers) | (set(outer) & outer_constants)
    bodies: dict[str, dict[str, Partition]] = {}

    def constant(view: NodeView) -> bool:
        """Depends on weights only: computed once when the program loads."""
        return (
            is_onnx_domain(view.domain)
            and view.op not in NONDETERMINISTIC
            and not _has_subgraph(view.node)
            and (view.op == "Constant" or (view.inputs and all(i == "" or i in constants for i in view.inputs)))
            and has_kernel(view.domain, view.op, view.opset)
        )

    def unresolved_shape_input(view: NodeView, lowering: Lowering) -> str | None:
        for i in lowering.shape_inputs:
            if view.has_input(i) and not resolve(view.inputs[i]):
                return f"input {i} is not known when planning"
        return None

    for view in views:
        if constant(view):
            placed.append(view)
            placement[view.name] = "constant"
            constants.update(view.outputs)
            host_known.update(view.outputs)
            continue
        if _runs_as_control(view):
            placed.append(view)
            placement[view.name] = "control"
            bodies[view.name] = {
                name: partition_graph(g, opsets, accepts, frozenset(constants))
                for name, g in subgraphs(view.node).items()
            }
            continue
        lowering = lowering_for(view.domain, view.op)
        reason = native_reason(view)
        if reason is None and lowering.kind == "host":
            placed.append(view)
            placement[view.name] = "host"
            host_known.update(view.outputs)
            continue
        if view.inputs and all(i == "" or i in host_known for i in view.inputs) and host_evaluable(view):
            placed.append(view)
            placement[view.name] = "host"
            host_known.update(view.outputs)
            continue
        if reason is None:
            reason = unresolved_shape_input(view, lowering)
        if reason is not None and (widened := widen(view)) is not None:
            before, wide, after = widened
            if native_reason(wide) is None and unresolved_shape_input(wide, lowering) is None:
                for cast in [c for c in before if c.outputs[0] not in made] + [wide] + after:
                    placement[cast.name] = "native"
                    placed.append(cast)
                    made.update({o: cast.out_dtype(k) for k, o in enumerate(cast.outputs) if o not in values})
                continue
        placed.append(view)
        if reason is None:
            placement[view.name] = "native"
        else:
            placement[view.name] = "fallback"
            reasons[view.name] = reason
    placed = _without_unread_casts(placed, placement, {v.name for v in graph.outputs})
    folds = _foldable_transposes(placed, placement, {v.name for v in graph.outputs}) if reads_strided() else {}
    with known_weights(constants), transposed_operands(folds):
        items = _group(placed, placement, bodies, folds)
    return Partition(items, placement, reasons, keyed, made, graph, outer)


def _without_unread_casts(placed: list[NodeView], placement: dict[str, str], outputs: set[str]) -> list[NodeView]:
    """Drop the Casts out of widened nodes whose float16/bfloat16 value only widened nodes read (as its f32 copy)."""
    read = set(outputs)
    for view in placed:
        read.update(view.inputs)
        if view.node is not None and _has_subgraph(view.node):
            read.update(captured_names(view.node))
    kept = []
    for view in placed:
        if isinstance(view, CastView) and view.outputs[0] not in read:
            del placement[view.name]
        else:
            kept.append(view)
    return kept


def _foldable_transposes(views: list[NodeView], placement: dict[str, str], graph_outputs: set[str]) -> dict:
    """float32 Transposes read only by native float32 MatMuls of the same segment, keeping one operand axis
    contiguous: the MatMul reads the Transpose's input through permuted strides, and the Transpose is a view."""
    consumers: dict[str, list[int]] = {}
    for index, view in enumerate(views):
        for name in view.inputs:
            if name:
                consumers.setdefault(name, []).append(index)
    folds = {}
    for index, view in enumerate(views):
        rank = view.in_rank(0)
        if view.op != "Transpose" or placement[view.name] != "native" or view.in_dtype(0) != "float32" or not rank:
            continue
        out = view.outputs[0]
        perm = tuple(view.attr("perm") or range(rank)[::-1])
        users = consumers.get(out, [])
        if out in graph_outputs or not users or rank < 2 or rank - 1 not in perm[-2:]:
            continue
        matmuls = all(
            views[u].op == "MatMul" and placement[views[u].name] == "native" and views[u].in_dtype(0) == "float32"
            for u in users
        )
        same_segment = all(placement[views[i].name] not in ("fallback", "control") for i in range(index, max(users)))
        if matmuls and same_segment:
            folds[out] = (view.inputs[0], perm)
    return folds


def _group(views: list[NodeView], placement: dict[str, str], bodies: dict[str, dict], folds: dict) -> list[Item]:
    items: list[Item] = []
    group_of: dict[str, int] = {}  # value name -> index of the item that produces it

    def ready_before(name: str, index: int) -> bool:
        return name == "" or name not in group_of or group_of[name] < index

    for view in views:
        where = placement[view.name]
        if where in ("host", "constant"):
            item = Item(where, [view])
        elif where == "fallback":
            item = Item("fallback", [view])
        elif where == "control":
            item = Item("control", [view], bodies=bodies[view.name])
        else:
            lowering = lowering_for(view.domain, view.op)
            if lowering.kind == "view" or view.outputs[0] in folds:
                item = Item("view", [view])
            elif lowering.kind == "elementwise":
                target = _fusable_group(view, items, group_of, ready_before)
                if target is not None:
                    items[target].nodes.append(view)
                    for out in view.outputs:
                        group_of[out] = target
                    continue
                item = Item("group", [view], "fused")
            else:
                kernel = lowering.kernel(view)
                item = Item("group", [view], "anchor" if kernel.anchor else "kernel", kernel)
        items.append(item)
        for out in view.outputs:
            group_of[out] = len(items) - 1
    return items


def _fusable_group(view: NodeView, items: list[Item], group_of, ready_before) -> int | None:
    domain = view.out_shape(0)
    if domain is None or any(d is None for d in domain) or len(view.outputs) != 1:
        return None
    for i, name in enumerate(view.inputs):
        index = group_of.get(name)
        if index is None:
            continue
        item = items[index]
        if item.kind != "group" or item.group not in ("fused", "anchor"):
            continue
        head = item.nodes[0]
        if not static_equal(head.out_shape(0), domain) or not static_equal(view.in_shape(i), domain):
            continue
        if item.group == "anchor" and view.out_dtype(0) != head.out_dtype(0) and not item.kernel.epilogue_casts:
            continue
        if item.group == "anchor" and item.kernel.epilogue_casts and len(item.nodes) == 1 and view.op != "Cast":
            continue  # STORE's acc takes the epilogue's output type, which a Cast first makes the anchor's value
        if all(ready_before(other, index) or group_of.get(other) == index for other in view.inputs):
            return index
    return None
