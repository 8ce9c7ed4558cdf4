"""Evaluates nodes whose inputs are all constant and stores the results as initializers.

A result is kept only when it does not grow the model much: shape arithmetic and
weight transposes fold; ConstantOfShape into a 400 MB tensor does not.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain
from hamr.ir.onnx_reference.kernels import NONDETERMINISTIC, evaluate_node

SMALL_RESULT = 4096  # elements that always fold
MAX_RESULT = 1 << 24


def _static_size(value: ir.Value) -> int | None:
    if value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return int(np.prod(list(value.shape), dtype=np.int64))


def _foldable(node: ir.Node) -> bool:
    if not is_onnx_domain(node.domain) or node.op_type in NONDETERMINISTIC:
        return False
    if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
        return False
    if any(o.is_graph_output() for o in node.outputs):
        return False
    return all(v is None or v.const_value is not None for v in node.inputs)


def _shape_of(node: ir.Node) -> np.ndarray | None:
    """Shape(x) folds when x's shape is static, even though x itself is not constant."""
    if node.op_type != "Shape" or not is_onnx_domain(node.domain) or node.outputs[0].is_graph_output():
        return None
    source = node.inputs[0]
    if source is None or source.shape is None or not all(isinstance(d, int) for d in source.shape):
        return None
    dims = list(source.shape)
    start = node.attributes.get("start")
    end = node.attributes.get("end")
    return np.array(dims[start.as_int() if start else 0 : end.as_int() if end else None], dtype=np.int64)


class ConstantFoldingPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        opsets = dict(model.opset_imports)
        modified = False
        for node in list(graph):
            shape = _shape_of(node)
            if shape is not None:
                results = [shape]
            elif _foldable(node):
                expected = [_static_size(o) for o in node.outputs]
                grows = node.op_type in {"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample"}
                if grows and any(e is None or e > SMALL_RESULT for e in expected):
                    continue
                inputs = [None if v is None else v.const_value.numpy() for v in node.inputs]
                if not _may_be_worth_keeping(node.outputs, inputs):
                    continue
                try:
                    results = evaluate_node(ir.serde.serialize_node(node), opsets, inputs)
                except Exception:
                    continue  # leave it to run time, where the error names the node
                if not _worth_keeping(results, inputs):
                    continue
            else:
                continue
            if not all(isinstance(r, np.ndarray) for r in results):
                continue
            _replace_with_initializers(graph, node, results)
            modified = True
        return ir.passes.PassResult(model, modified)


def _may_be_worth_keeping(outputs: list[ir.Value], inputs: list) -> bool:
    """Skip the evaluation when inferred shapes already say the result would be discarded."""
    sizes = [_static_size(o) for o in outputs]
    if any(s is None for s in sizes) or any(o.dtype is None or o.dtype == ir.DataType.STRING for o in outputs):
        return True  # unknown: evaluate and look
    out_bytes = sum(s * o.dtype.itemsize for s, o in zip(sizes, outputs))
    in_bytes = sum(i.nbytes for i in inputs if isinstance(i, np.ndarray))
    return max(sizes, default=0) <= SMALL_RESULT or (out_bytes <= in_bytes and max(sizes) <= MAX_RESULT)


def _worth_keeping(results: list, inputs: list) -> bool:
    sizes = [r.size for r in results if isinstance(r, np.ndarray)]
    if any(s > MAX_RESULT for s in sizes):
        return False
    out_bytes = sum(r.nbytes for r in results if isinstance(r, np.ndarray))
    in_bytes = sum(i.nbytes for i in inputs if isinstance(i, np.ndarray))
    return max(sizes, default=0) <= SMALL_RESULT or out_bytes <= in_bytes


def _replace_with_initializers(graph: ir.Graph, node: ir.Node, results: list[np.ndarray]) -> None:
    replacements = []
    for out, array in zip(node.outputs, results):
        value = ir.Value(
            name=None, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype))
        )
        value.const_value = ir.Tensor(array)
        out.replace_all_uses_with(value)
        replacements.append((out.name, value))
    graph.remove(node, safe=True)
    for name, value in replacements:
        value.name = name
        graph.register_initializer(value)
