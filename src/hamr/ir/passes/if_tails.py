"""Moves what follows a rank-changing If into both of its branches.

An exporter's `If` may squeeze an axis in one branch and not in the other (silero-vad:
`if x.shape[-1] == 1: x = x.squeeze(-1)`). Its output then has no rank, and neither has
anything downstream, so native targets could not compile it. This pass copies the nodes
that depend on such an If into each branch, where every rank is known again; the If then
produces the graph's outputs itself. Values copied into a branch get a suffix, so names
stay unique. The copies are bounded (`MAX_NODES` in all, `MAX_ROUNDS` If nodes).
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper, shape_inference

from hamr.ir.onnx_reference.kernels import evaluate_node

MAX_NODES = 20000
MAX_ROUNDS = 64
SMALL = 64  # elements: a Constant this small is copied into the subgraphs that read it
FOLDABLE = {"Gather", "Equal", "Not", "Cast", "Squeeze", "Unsqueeze", "Greater", "Less", "And", "Or", "Slice", "Concat"}


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _count(graph: onnx.GraphProto) -> int:
    return sum(1 + sum(_count(g) for g in _subgraphs(n)) for n in graph.node)


def _reads(node: onnx.NodeProto) -> set[str]:
    """Every name the node reads, its subgraphs' outer-scope reads included (a superset is harmless)."""
    names = {i for i in node.input if i}
    for g in _subgraphs(node):
        for inner in g.node:
            names |= _reads(inner)
        names |= {o.name for o in g.output}
    return names


def _defined(node: onnx.NodeProto) -> set[str]:
    names = {o for o in node.output if o}
    for g in _subgraphs(node):
        names |= {v.name for v in g.input} | {t.name for t in g.initializer}
        for inner in g.node:
            names |= _defined(inner)
    return names


def _small(tensor: onnx.TensorProto) -> bool:
    return int(np.prod(tensor.dims)) <= SMALL


def _small_constant(node: onnx.NodeProto) -> bool:
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return False
    return all(_small(attr.t) for attr in node.attribute if attr.type == onnx.AttributeProto.TENSOR)


def _sink_constants(graph: onnx.GraphProto, outer: dict[str, onnx.NodeProto], serial: list[int]) -> None:
    """Copy the small outer-scope Constants a subgraph reads into it: shape inference sees a constant
    (an Unsqueeze's axes, a Reshape's shape) only in the graph that defines it."""
    own = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        own.update(node.output)
    reads = [i for node in graph.node for i in node.input if i in outer and i not in own]
    names: dict[str, str] = {}
    copies = []
    for name in dict.fromkeys(reads):
        serial[0] += 1
        names[name] = f"{name}__in{serial[0]}"
        node = copy.deepcopy(outer[name])
        node.output[:] = [names[name]]
        node.name = (node.name or "Constant") + f"__in{serial[0]}"
        copies.append(node)
    for node in graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
    if copies:
        nodes = copies + list(graph.node)
        graph.ClearField("node")
        graph.node.extend(nodes)
    visible = dict(outer)
    visible.update(
        {t.name: onnx.helper.make_node("Constant", [], [t.name], value=t) for t in graph.initializer if _small(t)}
    )
    visible.update({o: n for n in graph.node if _small_constant(n) for o in n.output})
    for node in graph.node:
        for g in _subgraphs(node):
            _sink_constants(g, visible, serial)


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Every typed value's dims (None where unknown), all scopes."""
    shapes: dict[str, list[int | None]] = {}

    def visit(graph: onnx.GraphProto) -> None:
        for v in list(graph.input) + list(graph.output) + list(graph.value_info):
            t = v.type.tensor_type
            if v.type.HasField("tensor_type") and t.HasField("shape"):
                shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        for t in graph.initializer:
            shapes[t.name] = list(t.dims)
        for node in graph.node:
            for g in _subgraphs(node):
                visit(g)

    visit(model.graph)
    return shapes


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    return {name: len(dims) for name, dims in _shapes(model).items()}


class _Statics:
    """Values known at compile time from constants and known dims: the conditions of shape-decided Ifs."""

    def __init__(self, model: onnx.ModelProto):
        self.shapes = _shapes(model)
        self.opsets = {o.domain: o.version for o in model.opset_import}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.known: dict[str, np.ndarray] = {}

        def visit(graph: onnx.GraphProto) -> None:
            for t in graph.initializer:
                if _small(t):
                    self.known[t.name] = numpy_helper.to_array(t)
            for node in graph.node:
                self.producer.update({o: node for o in node.output if o})
                for g in _subgraphs(node):
                    visit(g)

        visit(model.graph)

    def value(self, name: str, depth: int = 0) -> np.ndarray | None:
        if name in self.known or depth > 32:
            return self.known.get(name)
        node = self.producer.get(name)
        result = None
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type == "Constant" and _small_constant(node):
            result = evaluate_node(node, self.opsets, [])[0]
        elif node.op_type == "Shape" and node.input[0] in self.shapes:
            attrs = {a.name: a.i for a in node.attribute}
            dims = self.shapes[node.input[0]][attrs.get("start", 0) : attrs.get("end", None)]
            result = np.array(dims, dtype=np.int64) if None not in dims else None
        elif node.op_type == "Size" and None not in self.shapes.get(node.input[0], [None]):
            result = np.array(np.prod(self.shapes[node.input[0]]), dtype=np.int64)
        elif node.op_type in FOLDABLE:
            inputs = [self.value(i, depth + 1) if i else None for i in node.input]
            if all(v is not None for i, v in zip(node.input, inputs) if i):
                result = np.asarray(evaluate_node(node, self.opsets, inputs)[0])
        if result is not None:
            self.known[name] = result
        return result


def _fold_first(graph: onnx.GraphProto, statics: _Statics) -> bool:
    """Replace the first If (here or in a subgraph) whose condition is known by the branch it takes."""
    for index, node in enumerate(graph.node):
        if node.op_type != "If" or node.domain not in ("", "ai.onnx"):
            continue
        cond = statics.value(node.input[0])
        if cond is None or cond.size != 1:
            continue
        taken = next(
            a.g for a in node.attribute if a.name == ("then_branch" if bool(cond.reshape(-1)[0]) else "else_branch")
        )
        inlined = list(taken.node) + [
            onnx.helper.make_node("Identity", [b.name], [o], name=f"{node.name}__{o}")
            for o, b in zip(node.output, taken.output)
            if o
        ]
        nodes = list(graph.node[:index]) + inlined + list(graph.node[index + 1 :])
        graph.ClearField("node")
        graph.node.extend(nodes)
        return True
    return any(_fold_first(g, statics) for n in graph.node for g in _subgraphs(n))


def _rank_changing(node: onnx.NodeProto, ranks: dict[str, int]) -> bool:
    if node.op_type != "If" or node.domain not in ("", "ai.onnx"):
        return False
    branches = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
    then, other = branches.get("then_branch"), branches.get("else_branch")
    if then is None or other is None:
        return False
    for out, a, b in zip(node.output, then.output, other.output):
        ra, rb = ranks.get(a.name), ranks.get(b.name)
        if out and out not in ranks and ra is not None and rb is not None and ra != rb:
            return True
    return False


def _rename(graph_or_node, names: dict[str, str]) -> None:
    if isinstance(graph_or_node, onnx.NodeProto):
        node = graph_or_node
        node.input[:] = [names.get(i, i) if i else i for i in node.input]
        node.output[:] = [names.get(o, o) if o else o for o in node.output]
        if node.name:
            node.name += names[""]
        for g in _subgraphs(node):
            _rename(g, names)
        return
    graph = graph_or_node
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        v.name = names.get(v.name, v.name)
    for t in graph.initializer:
        t.name = names.get(t.name, t.name)
    for node in graph.node:
        _rename(node, names)


def _split_first(graph: onnx.GraphProto, ranks: dict[str, int], serial: list[int]) -> bool:
    """Move the tail of the first rank-changing If of `graph` (or of a subgraph) into its branches."""
    found = [i for i, node in enumerate(graph.node) if _rank_changing(node, ranks)]
    if not found:
        return any(_split_first(g, ranks, serial) for n in graph.node for g in _subgraphs(n))
    index = found[0]
    if_node = graph.node[index]
    produced = {o for o in if_node.output if o}
    tail, positions = [], {index}
    for position in range(index + 1, len(graph.node)):
        later = graph.node[position]
        if _reads(later) & produced:
            tail.append(later)
            positions.add(position)
            produced |= {o for o in later.output if o}
    if not tail:
        return False
    outputs = [v for v in graph.output if v.name in produced]
    branches = {a.name: a for a in if_node.attribute if a.type == onnx.AttributeProto.GRAPH}
    defined = set().union(*(_defined(n) for n in tail))
    new_if = onnx.NodeProto()
    new_if.CopyFrom(if_node)
    new_if.ClearField("output")
    new_if.output.extend(v.name for v in outputs)
    new_if.ClearField("attribute")
    for attr in if_node.attribute:
        if attr.name not in branches:
            new_if.attribute.append(attr)
    for name in ("then_branch", "else_branch"):
        serial[0] += 1
        branch = copy.deepcopy(branches[name].g)
        suffix = f"__{name[:4]}{serial[0]}"
        names = {d: d + suffix for d in defined} | {"": suffix}  # "": the suffix of node names
        names.update({o: b.name for o, b in zip(if_node.output, branches[name].g.output) if o})
        copies = [copy.deepcopy(n) for n in tail]
        for n in copies:
            _rename(n, names)
        branch.node.extend(copies)
        branch.ClearField("output")
        for v in outputs:
            out = copy.deepcopy(v)
            out.name = names.get(v.name, v.name)
            branch.output.append(out)
        new_if.attribute.append(onnx.helper.make_attribute(name, branch))
    keep = [n for i, n in enumerate(graph.node) if i not in positions]
    graph.ClearField("node")
    graph.node.extend(keep + [new_if])
    infos = [v for v in graph.value_info if v.name not in defined]
    graph.ClearField("value_info")
    graph.value_info.extend(infos)
    return True


class IfTailPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if not any(n.op_type == "If" for n in ir.traversal.RecursiveGraphIterator(model.graph)):
            return ir.passes.PassResult(model, False)
        changed = False
        serial = [0]
        try:
            proto = ir.serde.serialize_model(model)
            _sink_constants(proto.graph, {}, serial)
            proto = shape_inference.infer_shapes(proto)
            for _ in range(MAX_ROUNDS):
                candidate = copy.deepcopy(proto)
                if not _fold_first(candidate.graph, _Statics(candidate)):
                    if not _split_first(candidate.graph, _ranks(candidate), serial):
                        break
                    if _count(candidate.graph) > MAX_NODES:
                        break
                _sink_constants(candidate.graph, {}, serial)
                proto = shape_inference.infer_shapes(candidate)
                changed = True
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
            pass  # the model keeps its shape; the If's tail falls back node by node
        if not changed:
            return ir.passes.PassResult(model, False)
        model.graph = ir.serde.deserialize_model(proto).graph
        return ir.passes.PassResult(model, True)
