"""From a partition to segments of launches: final kernels, buffer slots and aliases.

A segment is a maximal run of native items between fallback and control nodes. Each
segment becomes one entry function (C) or one launch list (OpenCL), and is planned on its
own for the concrete shapes of the values that enter it. A control node's subgraphs are
lowered the same way, their segments numbered after the enclosing graph's, so one source
holds the kernels of every graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir

from hamr.ir.dtypes import ctype
from hamr.ir.node_view import NodeView, captured_names, value_dtype
from hamr.targets.native.fusion import fuse_body
from hamr.targets.native.ops.base import Kernel, numel
from hamr.targets.native.partition import Item, Partition


@dataclass
class Launch:
    name: str
    kernel: Kernel
    nodes: list[str]
    stores: str = ""  # epilogue statements for STORE() of an anchor ("" = plain store)


@dataclass
class Segment:
    index: int
    items: list[Item]
    launches: list[Launch] = field(default_factory=list)
    ext_inputs: list[str] = field(default_factory=list)
    keyed: list[str] = field(default_factory=list)  # ext inputs whose values the plan needs
    escaping: list[str] = field(default_factory=list)
    alias: dict[str, str] = field(default_factory=dict)  # view value -> root value
    slots: list[str] = field(default_factory=list)  # buffer values (roots); index = slot

    def slot(self, name: str) -> int:
        return self.slots.index(self.alias.get(name, name))


@dataclass
class Control:
    """An If, Loop or Scan node: the program runs it, each subgraph lowered on its own."""

    item: Item
    bodies: dict[str, Lowered]  # attribute name -> its subgraph's lowering

    @property
    def node(self) -> NodeView:
        return self.item.node


@dataclass
class Lowered:
    partition: Partition
    steps: list  # Segment | Item (fallback) | Control
    dtypes: dict[str, str]  # value name -> numpy dtype name (of every graph, at the outermost)
    weights: set[str]  # initializers and the outputs of constant nodes (of every graph, at the outermost)
    host_values: set[str]
    constants: list[NodeView] = field(default_factory=list)  # computed once at load, in order
    inputs: list[str] = field(default_factory=list)  # the graph's inputs
    outputs: list[str] = field(default_factory=list)  # the graph's outputs
    end: int = 0  # one past the highest segment index of this graph and its subgraphs
    derived: dict = field(default_factory=dict)  # weights repacked at load: name -> (source weight, function)

    @property
    def segments(self) -> list[Segment]:
        return [s for s in self.steps if isinstance(s, Segment)]

    def walk(self):
        """This lowering and those of every subgraph, outermost first."""
        yield self
        for step in self.steps:
            if isinstance(step, Control):
                for body in step.bodies.values():
                    yield from body.walk()

    @property
    def all_segments(self) -> list[Segment]:
        return [s for lowered in self.walk() for s in lowered.segments]

    @property
    def all_constants(self) -> list[NodeView]:
        return [c for lowered in self.walk() for c in lowered.constants]


def assemble(model: ir.Model, part: Partition) -> Lowered:
    lowered = assemble_graph(model.graph, part)
    for inner in list(lowered.walk())[1:]:
        lowered.dtypes.update(inner.dtypes)
        lowered.weights.update(inner.weights)
        lowered.derived.update(inner.derived)
    return lowered


def assemble_graph(graph: ir.Graph, part: Partition, first: int = 0, outer_weights: frozenset = frozenset()) -> Lowered:
    dtypes = {v.name: value_dtype(v) for v in graph.inputs}
    dtypes.update({name: value_dtype(v) for name, v in part.outer.items()})
    for node in graph:
        dtypes.update({o.name: value_dtype(o) for o in node.outputs})
    for name, v in graph.initializers.items():
        dtypes[name] = value_dtype(v)
    dtypes.update(part.dtypes)
    weights = set(graph.initializers) | (set(part.outer) & outer_weights)
    host_values = set(part.keyed)
    for item in part.items:
        if item.kind == "host":
            host_values.update(item.node.outputs)

    constants = [item.node for item in part.items if item.kind == "constant"]
    for node in constants:
        weights.update(node.outputs)
    steps: list = []
    current: list[Item] = []
    for item in part.items:
        if item.kind == "constant":
            continue
        if item.kind in ("fallback", "control"):
            if current:
                steps.append(Segment(first + len(steps), current))
                current = []
            steps.append(item)
        else:
            current.append(item)
    if current:
        steps.append(Segment(first + len(steps), current))

    graph_outputs = {v.name for v in graph.outputs}
    needed_by: dict[str, set[int]] = {}
    for index, step in enumerate(steps):
        for item in step.items if isinstance(step, Segment) else [step]:
            for node in item.nodes:
                names = list(node.inputs)
                if item.kind in ("fallback", "control"):
                    names += sorted(captured_names(node.node))
                for name in names:
                    if name:
                        needed_by.setdefault(name, set()).add(index)

    for segment in (s for s in steps if isinstance(s, Segment)):
        here = segment.index - first
        produced = [o for item in segment.items for node in item.nodes for o in node.outputs]
        segment.escaping = [o for o in produced if o in graph_outputs or any(i != here for i in needed_by.get(o, ()))]
        inside = set(produced)
        ext = []
        for item in segment.items:
            for node in item.nodes:
                for name in node.inputs:
                    if name and name not in inside and name not in weights and name not in ext:
                        ext.append(name)
        segment.ext_inputs = ext
        segment.keyed = [name for name in ext if name in host_values]
        _build_launches(segment, set(segment.escaping), host_values, dtypes)
    end = first + len(steps)
    for index, step in enumerate(steps):
        if isinstance(step, Item) and step.kind == "control":
            bodies = {}
            for name, body in step.bodies.items():
                bodies[name] = assemble_graph(body.graph, body, end, frozenset(weights))
                end = bodies[name].end
            steps[index] = Control(step, bodies)
    derived = {}
    for segment in (s for s in steps if isinstance(s, Segment)):
        for launch in segment.launches:
            derived.update(launch.kernel.derived)
    for name, (source, _) in derived.items():
        weights.add(name)
        dtypes[name] = dtypes[source]
    inputs = [v.name for v in graph.inputs]
    outputs = [v.name for v in graph.outputs]
    return Lowered(part, steps, dtypes, weights, host_values, constants, inputs, outputs, end, derived)


def _build_launches(segment: Segment, escaping: set[str], host_values: set[str], dtypes) -> None:
    used_outside: dict[str, int] = {}
    for item in segment.items:
        for node in item.nodes:
            for name in node.inputs:
                used_outside[name] = used_outside.get(name, 0) + 1
    for item in segment.items:
        if item.kind == "host":
            continue
        if item.kind == "view":
            node = item.node
            if node.outputs[0] in escaping:
                _add(segment, _copy_kernel(node), [node.name])
            else:
                segment.alias[node.outputs[0]] = segment.alias.get(node.inputs[0], node.inputs[0])
            continue
        inner = {o for node in item.nodes for o in node.outputs}
        consumed_in_group = [name for node in item.nodes for name in node.inputs]
        live_out = set()
        for name in inner:
            outside_uses = used_outside.get(name, 0) - consumed_in_group.count(name)
            if name in escaping or outside_uses > 0:
                live_out.add(name)
        names = [n.name for n in item.nodes]
        if item.group == "fused":
            _add(segment, _fused_kernel(item.nodes, live_out), names)
        elif item.group == "anchor":
            kernel, stores = _anchor_kernel(item, live_out)
            _add(segment, kernel, names, stores)
        else:
            _add(segment, item.kernel, names)


def _add(segment: Segment, kernel: Kernel, nodes: list[str], stores: str = "") -> None:
    if not kernel.is_map and kernel.own_args is None:
        kernel.own_args = (len(kernel.inputs), len(kernel.outputs))
    launch = Launch(f"k{segment.index}_{len(segment.launches)}", kernel, nodes, stores)
    segment.launches.append(launch)
    for name in kernel.inputs + kernel.outputs:
        root = segment.alias.get(name, name)
        if root not in segment.slots:
            segment.slots.append(root)


def _copy_kernel(node: NodeView) -> Kernel:
    src, dst = node.inputs[0], node.outputs[0]
    return Kernel(
        inputs=[src],
        outputs=[dst],
        n_params=1,
        params=lambda pc: [numel(pc.shape(dst))],
        body="out0[gid] = in0[gid];",
        label="copy",
    )


def _fused_kernel(nodes: list[NodeView], live_out: set[str]) -> Kernel:
    head = nodes[0]
    domain = head.outputs[0]
    epi = fuse_body(nodes, domain, head.out_shape(0), live_out, param_base=1)
    ins = epi.inputs

    def params(pc):
        return [numel(pc.shape(domain))] + epi.params(pc)

    same = [i for i, name in enumerate(ins) if f"in{i}[gid]" in epi.body]
    inplace = [(0, i) for i in same]
    return Kernel(
        ins,
        epi.outputs,
        1 + epi.n_params,
        params,
        body=epi.body,
        rows=epi.rows,
        inplace=inplace,
        label="+".join(n.op for n in nodes),
    )


def _anchor_kernel(item: Item, live_out: set[str]) -> tuple[Kernel, str]:
    base = item.kernel
    anchor_out = base.outputs[0]
    head = item.nodes[0]
    epi = fuse_body(
        item.nodes[1:],
        anchor_out,
        head.out_shape(0),
        live_out,
        param_base=base.n_params,
        first_input=len(base.inputs),
        acc=(anchor_out, ctype(head.out_dtype(0))),
    )
    if not item.nodes[1:] and epi.outputs == [anchor_out]:
        return base, ""

    def params(pc):
        return base.params(pc) + epi.params(pc)

    kernel = Kernel(
        inputs=base.inputs + epi.inputs,
        outputs=epi.outputs,
        n_params=base.n_params + epi.n_params,
        params=params,
        sources=base.sources,
        anchor=True,
        rows=epi.rows,
        label=base.label + "+" + "+".join(n.op for n in item.nodes[1:]),
        own_args=base.own_args or (len(base.inputs), len(base.outputs)),
        derived=base.derived,
        epilogue_casts=base.epilogue_casts,
    )
    return kernel, epi.body
