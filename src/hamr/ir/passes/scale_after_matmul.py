"""Moves a scalar scaling of a MatMul operand after the MatMul: MatMul(x * s, y) = MatMul(x, y) * s.

Attention scales its query (or key) by 1/sqrt(head size) between the head Transpose and the MatMul; moved after, the
Transpose feeds the MatMul directly (which the native targets fold into operand strides) and the scaling becomes
the MatMul's epilogue. Only float32, a constant scalar, and a product read by that one MatMul whose other operand
is not itself computed from weights (a dequantised weight `Cast(q) * s` stays one weight, computed and packed at load).
"""

from __future__ import annotations

import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain
from hamr.ir.passes.graph_match import FreshNames, constant, known_at_load, producer, replace_value


def _scaled_operand(matmul: ir.Node, index: int, memo: dict) -> tuple[ir.Node, ir.Value, ir.Value] | None:
    """(the Mul, its other operand, the scalar) when MatMul's operand `index` is a scalar product read only here."""
    value = matmul.inputs[index]
    mul = producer(value, "Mul")
    if mul is None or len(mul.inputs) != 2 or len(value.uses()) != 1 or value.is_graph_output():
        return None
    for operand, scalar in ((mul.inputs[0], mul.inputs[1]), (mul.inputs[1], mul.inputs[0])):
        known = constant(scalar)
        out_rank = len(matmul.outputs[0].shape) if matmul.outputs[0].shape is not None else 0
        if known is not None and known.size == 1 and known.ndim <= min(1, out_rank) and operand is not None:
            if known_at_load(operand, matmul.graph, memo):
                return None
            if operand.dtype == ir.DataType.FLOAT and scalar.dtype == ir.DataType.FLOAT:
                return mul, operand, scalar
    return None


class ScaleAfterMatMulPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        names = FreshNames(graph)
        modified = False
        memo: dict[str, bool] = {}
        for matmul in list(graph):
            if matmul.op_type != "MatMul" or not is_onnx_domain(matmul.domain) or len(matmul.inputs) != 2:
                continue
            for index in (0, 1):
                scaled = _scaled_operand(matmul, index, memo)
                if scaled is None:
                    continue
                mul, operand, scalar = scaled
                matmul.replace_input_with(index, operand)
                graph.remove(mul, safe=True)
                out = matmul.outputs[0]
                result = ir.Value(name=names.fresh(f"{out.name}_scaled"), type=out.type, shape=out.shape)
                replace_value(out, result)
                if out.name is None:
                    out.name = names.fresh(f"{result.name}_unscaled")
                graph.insert_after(
                    matmul, ir.Node("", "Mul", [out, scalar], outputs=[result], name=names.fresh(mul.name or "scale"))
                )
                modified = True
        return ir.passes.PassResult(model, modified)
