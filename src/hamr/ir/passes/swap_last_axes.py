"""Rewrites PyTorch's export of `x.transpose(-1, -2)` on a tensor of rank r as one Transpose:

    s = Shape(x)
    a = Reshape(x, Concat([-1], s[-2:-1], s[-1:]))     # the leading axes merged
    b = Transpose(a, perm=[0, 2, 1])
    y = Reshape(b, Concat(s[:-2], s[-1:], s[-2:-1]))   # split back

becomes y = Transpose(x, perm=[0, ..., r-3, r-1, r-2]), composed with a Transpose that makes x and is read by nothing
else. The native targets fold a Transpose that feeds a MatMul into its operand strides; the reshaped one they cannot.
"""

from __future__ import annotations

import onnx_ir as ir

from hamr.ir.passes.graph_match import FreshNames, constant, producer, replace_value

FROM_START, TO_END = -(2**63), 2**63 - 1


def _slice_of_shape(value: ir.Value, x: ir.Value) -> tuple[int, int] | None:
    """(start, end) when value = Shape(x)[start:end] on axis 0 with step 1, all constant."""
    node = producer(value, "Slice")
    if node is None or len(node.inputs) < 3:
        return None
    shape = producer(node.inputs[0], "Shape")
    if shape is None or shape.inputs[0] is not x or shape.attributes.get_int("start", 0) != 0:
        return None
    if "end" in shape.attributes:
        return None
    bounds = [constant(v) for v in node.inputs[1:]]
    if any(b is None or b.size != 1 for b in bounds):
        return None
    start, end = int(bounds[0].reshape(-1)[0]), int(bounds[1].reshape(-1)[0])
    if len(bounds) > 2 and int(bounds[2].reshape(-1)[0]) != 0:
        return None
    if len(bounds) > 3 and int(bounds[3].reshape(-1)[0]) != 1:
        return None
    return start, end


def _pieces(value: ir.Value) -> list[ir.Value] | None:
    node = producer(value, "Concat")
    return list(node.inputs) if node is not None and node.attributes.get_int("axis", 0) == 0 else None


def _is_minus_one(value: ir.Value) -> bool:
    known = constant(value)
    return known is not None and known.size == 1 and int(known.reshape(-1)[0]) == -1


def _swapped_input(y: ir.Value) -> tuple[ir.Value, list[ir.Node]] | None:
    """(x, the nodes from the first Reshape on) when y is x with its last two axes swapped, as above."""
    split = producer(y, "Reshape")
    turn = producer(split.inputs[0], "Transpose") if split is not None else None
    merge = producer(turn.inputs[0], "Reshape") if turn is not None else None
    if merge is None or tuple(turn.attributes.get_ints("perm", ())) != (0, 2, 1):
        return None
    x = merge.inputs[0]
    if x is None or x.shape is None or len(x.shape) < 2:
        return None
    merged, back = _pieces(merge.inputs[1]), _pieces(split.inputs[1])
    if merged is None or back is None or len(merged) != 3 or len(back) != 3 or not _is_minus_one(merged[0]):
        return None
    if [_slice_of_shape(v, x) for v in merged[1:]] != [(-2, -1), (-1, TO_END)]:
        return None
    if [_slice_of_shape(v, x) for v in back] != [(FROM_START, -2), (-1, TO_END), (-2, -1)]:
        return None
    for value in (merge.outputs[0], turn.outputs[0]):
        if len(value.uses()) != 1 or value.is_graph_output():
            return None
    return x, [split, turn, merge]


def _remove_dead(graph: ir.Graph, node: ir.Node) -> None:
    if node.graph is not graph or any(o.uses() or o.is_graph_output() for o in node.outputs):
        return
    inputs = [v for v in node.inputs if v is not None]
    graph.remove(node, safe=True)
    for value in inputs:
        if value.producer() is not None:
            _remove_dead(graph, value.producer())


class SwapLastAxesPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        names = FreshNames(graph)
        modified = False
        for node in list(graph):
            if node.graph is not graph or node.op_type != "Reshape":
                continue
            found = _swapped_input(node.outputs[0])
            if found is None:
                continue
            x, chain = found
            rank = len(x.shape)
            perm = [*range(rank - 2), rank - 1, rank - 2]
            source = x
            before = producer(x, "Transpose")
            if before is not None and before.graph is graph:
                inner = list(before.attributes.get_ints("perm", range(rank)[::-1]))
                perm, source = [inner[p] for p in perm], before.inputs[0]
            y = node.outputs[0]
            out = ir.Value(name=names.fresh(f"{y.name}_swapped"), type=y.type, shape=y.shape)
            swap = ir.Node(
                "", "Transpose", [source], [ir.AttrInt64s("perm", perm)], outputs=[out], name=names.fresh("swap")
            )
            graph.insert_before(node, swap)
            replace_value(y, out)
            for dead in chain:
                _remove_dead(graph, dead)
            if before is not None:
                _remove_dead(graph, before)
            modified = True
        return ir.passes.PassResult(model, modified)
