"""Rewrites nodes that do nothing at inference into Identity, for IdentityEliminationPass to remove."""

from __future__ import annotations

import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain


def _unused(value: ir.Value | None) -> bool:
    return value is None or (not value.uses() and not value.is_graph_output())


def _static_dims(shape: ir.Shape | None) -> list[int] | None:
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return list(shape)


def is_noop(node: ir.Node) -> bool:
    if not is_onnx_domain(node.domain):
        return False
    op = node.op_type
    if op == "Dropout":
        training = node.inputs[2] if len(node.inputs) > 2 else None
        inference = training is None or (training.const_value is not None and not bool(training.const_value.numpy()))
        return inference and all(_unused(o) for o in node.outputs[1:])
    if op == "Cast":
        source = node.inputs[0]
        to = node.attributes.get("to")
        return source is not None and to is not None and source.dtype == ir.DataType(to.as_int())
    if op == "Reshape":
        data, shape = node.inputs[0], node.inputs[1]
        dims = _static_dims(data.shape if data is not None else None)
        if dims is None or shape is None or shape.const_value is None:
            return False
        return [int(d) for d in shape.const_value.numpy().ravel()] == dims
    return False


class NoOpToIdentityPass(ir.passes.InPlacePass):
    """Dropout at inference, Cast to the same type, Reshape to the same shape."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in list(model.graph):
            if is_noop(node):
                replacement = ir.Node("", "Identity", [node.inputs[0]], num_outputs=1, name=node.name)
                out = node.outputs[0]
                new_out = replacement.outputs[0]
                new_out.shape, new_out.type = out.shape, out.type
                model.graph.insert_before(node, replacement)
                out.replace_all_uses_with(new_out, replace_graph_outputs=True)
                model.graph.remove(node, safe=True)
                new_out.name = out.name
                modified = True
        return ir.passes.PassResult(model, modified)
