"""Types and shapes of custom ops' outputs, from each op's shape/type function.

onnx shape inference knows nothing of a custom domain: it leaves the op's outputs, and
everything downstream of them, untyped. This pass runs after ``ShapeInferencePass``: it
sets each registered custom node's outputs from its shape function, runs onnx shape
inference again so the values downstream get theirs, and repeats until nothing changes
(a custom op downstream of another one needs a second round).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common

from hamr.ir.node_view import NodeView, value_dtype, value_shape
from hamr.ops.definition import STANDARD_DOMAINS, CustomOp
from hamr.ops.registry import lookup


def _set_type(value: ir.Value, dtype: str | None, shape) -> bool:
    """Give `value` this dtype and shape; dims the function leaves unknown keep what the value knew."""
    changed = False
    if dtype is not None:
        new = ir.DataType.from_numpy(np.dtype(dtype))
        if value.dtype != new:
            value.dtype = new
            changed = True
    if shape is not None:
        old = value_shape(value)
        if old is not None and len(old) == len(shape):
            shape = tuple(o if n is None else n for n, o in zip(shape, old))
        if old != tuple(shape):
            value.shape = ir.Shape(list(shape))
            changed = True
    return changed


def apply_shape_function(node: ir.Node, op: CustomOp) -> bool:
    """Set the node's output types from the op's shape function; whether anything changed."""
    view = NodeView(node, 0)
    results = op.infer_outputs(
        [value_dtype(v) for v in node.inputs],
        [value_shape(v) for v in node.inputs],
        {name: view.attr(name) for name in node.attributes},
        len(node.outputs),
        node.name or "",
    )
    changed = False
    for value, (dtype, shape) in zip(node.outputs, results):
        changed |= _set_type(value, dtype, shape)
    return changed


class CustomOpShapePass(ir.passes.InPlacePass):
    """Shape functions of custom ops, alternating with onnx shape inference until a fixed point."""

    def __init__(self, max_rounds: int = 16):
        super().__init__()
        self.max_rounds = max_rounds

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        custom = [
            (node, op)
            for node in ir.traversal.RecursiveGraphIterator(model.graph)
            if node.domain not in STANDARD_DOMAINS and (op := lookup(node.domain, node.op_type)) is not None
        ]
        modified = False
        for _ in range(self.max_rounds if custom else 0):
            changed = False
            for node, op in custom:
                changed |= apply_shape_function(node, op)
            if not changed:
                break
            modified = True
            common.ShapeInferencePass(strict_mode=False)(model)
        return ir.passes.PassResult(model, modified)
