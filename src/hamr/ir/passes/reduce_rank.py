"""Gives Reduce* outputs their rank when ONNX shape inference leaves them shapeless.

ONNX infers no output shape for a reduction whose `axes` is a runtime input, although the
rank is certain: the input's with keepdims, else the input's minus the number of axes
(the static length of `axes`). Native targets need ranks, so this pass writes
`[None] * rank`; the shape inference that follows carries it to the nodes downstream.
"""

from __future__ import annotations

import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain


def _output_rank(node: ir.Node) -> int | None:
    data = node.inputs[0] if node.inputs else None
    if data is None or data.shape is None:
        return None
    rank = len(data.shape)
    keepdims = node.attributes.get("keepdims")
    if keepdims is None or keepdims.as_int():
        return rank
    axes = node.inputs[1] if len(node.inputs) > 1 else None
    if axes is None:
        noop = node.attributes.get("noop_with_empty_axes")
        return rank if noop is not None and noop.as_int() else 0
    if axes.shape is None or len(axes.shape) != 1 or not isinstance(axes.shape[0], int):
        return None
    count = axes.shape[0]
    if count == 0:
        noop = node.attributes.get("noop_with_empty_axes")
        return rank if noop is not None and noop.as_int() else 0
    return rank - count


class ReduceRankPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in model.graph:
            if not is_onnx_domain(node.domain) or not node.op_type.startswith("Reduce") or len(node.inputs) < 2:
                continue
            output = node.outputs[0]
            if output.shape is not None:
                continue
            rank = _output_rank(node)
            if rank is not None:
                output.shape = ir.Shape([None] * rank)
                modified = True
        return ir.passes.PassResult(model, modified)
