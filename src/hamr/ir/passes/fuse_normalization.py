"""Rewrites the decomposed layer and RMS normalisations exporters write back into the single ONNX op:

- LayerNormalization: d = x - ReduceMean(x); y = d / Sqrt(ReduceMean(d^2) + eps) [* scale] [+ bias]
- RMSNormalization:   y = x / Sqrt(ReduceMean(x^2) + eps) [* scale]

Both means over the same trailing axes (kept), `^2` a Pow by the constant 2 or a product with itself, eps a
constant scalar, the division a Div or a Mul by the Reciprocal. Every intermediate feeds only the next step, so the
whole chain is replaced. Only float32, where the single op's float32 computation is the chain's own.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain
from hamr.ir.passes.graph_match import FreshNames, constant, only_feeds, producer, replace_value

Chain = list[ir.Node]
LAYER_NORM_SINCE, RMS_NORM_SINCE = 17, 23


def _square_of(value: ir.Value) -> tuple[ir.Value, ir.Node] | None:
    """(x, node) when value = x^2 as Pow(x, 2) or Mul(x, x)."""
    node = producer(value, "Pow", "Mul")
    if node is None or len(node.inputs) != 2:
        return None
    if node.op_type == "Mul":
        return (node.inputs[0], node) if node.inputs[0] is node.inputs[1] else None
    exponent = constant(node.inputs[1])
    if exponent is None or exponent.size != 1 or float(exponent.reshape(-1)[0]) != 2.0:
        return None
    return node.inputs[0], node


def _mean_axes(value: ir.Value) -> tuple[ir.Value, int, ir.Node] | None:
    """(input, first axis, node) of a ReduceMean over a trailing run of axes with keepdims."""
    node = producer(value, "ReduceMean")
    if node is None or not node.inputs or node.inputs[0] is None or node.attributes.get_int("keepdims", 1) != 1:
        return None
    x = node.inputs[0]
    if x.shape is None:
        return None
    rank = len(x.shape)
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = constant(node.inputs[1])
        if axes is None:
            return None
        axes = axes.reshape(-1).tolist()
    else:
        attr = node.attributes.get("axes")
        axes = list(attr.as_ints()) if attr is not None else []
    if not axes or any(not -rank <= a < rank for a in axes):
        return None
    normal = sorted({int(a) % rank for a in axes})
    if len(normal) != len(axes) or normal != list(range(normal[0], rank)):
        return None
    return x, normal[0], node


def _rsqrt_parts(out: ir.Value) -> tuple[ir.Value, ir.Value, float, int, Chain] | None:
    """(numerator d, squared input, eps, axis, nodes) when out = d / Sqrt(ReduceMean(s^2) + eps)."""
    div = producer(out, "Div", "Mul")
    if div is None or len(div.inputs) != 2:
        return None
    chain: Chain = [div]
    numerator, root = div.inputs
    if div.op_type == "Mul":
        for a, b in ((div.inputs[0], div.inputs[1]), (div.inputs[1], div.inputs[0])):
            if (recip := producer(b, "Reciprocal")) is not None:
                numerator, root = a, recip.inputs[0]
                chain.append(recip)
                break
        else:
            return None
    sqrt = producer(root, "Sqrt")
    add = producer(sqrt.inputs[0], "Add") if sqrt is not None else None
    if add is None or len(add.inputs) != 2:
        return None
    for mean_value, eps_value in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
        eps = constant(eps_value)
        mean = _mean_axes(mean_value)
        if eps is None or eps.size != 1 or eps.ndim > len(mean_value.shape or ()) or mean is None:
            continue
        squared = _square_of(mean[0])
        if squared is None:
            continue
        chain += [sqrt, add, mean[2], squared[1]]
        return numerator, squared[0], float(eps.reshape(-1)[0]), mean[1], chain
    return None


def _affine_operand(node: ir.Node | None, current: ir.Value, x: ir.Value, axis: int, op: str) -> ir.Value | None:
    """The other operand of `current op other` when it broadcasts into x's normalised shape without growing it."""
    if node is None or node.op_type != op or not is_onnx_domain(node.domain) or len(node.inputs) != 2:
        return None
    if len(current.uses()) != 1 or current.is_graph_output():
        return None
    other = node.inputs[1] if node.inputs[0] is current else node.inputs[0]
    if other is None or other is current or other.dtype != x.dtype or other.shape is None:
        return None
    normalised = list(x.shape)[axis:]
    dims = list(other.shape)
    if len(dims) > len(normalised):
        return None
    for dim, full in zip(dims, normalised[len(normalised) - len(dims) :], strict=True):
        if dim != 1 and dim != full:
            return None
    return other


def _single_user(value: ir.Value) -> ir.Node | None:
    uses = value.uses()
    return uses[0].node if len(uses) == 1 and not value.is_graph_output() else None


class FuseNormalizationPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        names = FreshNames(graph)
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
        modified = False
        for node in list(graph):
            if node.graph is graph and node.op_type in ("Div", "Mul") and is_onnx_domain(node.domain):
                modified |= self._rewrite(graph, names, node, opset)
        return ir.passes.PassResult(model, modified)

    @staticmethod
    def _rewrite(graph: ir.Graph, names, div: ir.Node, opset: int) -> bool:
        parts = _rsqrt_parts(div.outputs[0])
        if parts is None:
            return False
        numerator, squared, eps, axis, chain = parts
        sub = producer(numerator, "Sub")
        mean = _mean_axes(sub.inputs[1]) if sub is not None and len(sub.inputs) == 2 else None
        layer = squared is numerator and mean is not None and mean[0] is sub.inputs[0] and mean[1] == axis
        if layer:
            x = sub.inputs[0]
            chain += [sub, mean[2]]
        elif squared is numerator:
            x = numerator
        else:
            return False
        if opset < (LAYER_NORM_SINCE if layer else RMS_NORM_SINCE):
            return False
        if x.dtype != ir.DataType.FLOAT or x.shape is None or len(x.shape) == 0:
            return False
        if not only_feeds(chain, x, div.outputs[0]):
            return False
        out = div.outputs[0]
        scale = _affine_operand(_single_user(out), out, x, axis, "Mul")
        if scale is not None:
            chain.append(_single_user(out))
            out = chain[-1].outputs[0]
        bias = _affine_operand(_single_user(out), out, x, axis, "Add") if layer else None
        if bias is not None:
            chain.append(_single_user(out))
            out = chain[-1].outputs[0]
        if scale is None:
            normalised = list(x.shape)[axis:]
            if not all(isinstance(d, int) for d in normalised):
                return False
            scale = names.initializer(f"{out.name}_scale", np.ones(normalised, np.float32))
        op = "LayerNormalization" if layer else "RMSNormalization"
        inputs = [x, scale] + ([bias] if bias is not None else [])
        result = ir.Value(name=names.fresh(f"{out.name}_{op}"), type=out.type, shape=out.shape)
        attributes = [ir.AttrInt64("axis", axis), ir.AttrFloat32("epsilon", eps)]
        fused = ir.Node("", op, inputs, attributes, outputs=[result], name=names.fresh(f"{div.name}_{op}"))
        graph.insert_before(out.producer(), fused)  # after x, the scale and the bias
        replace_value(out, result)
        graph.remove(chain, safe=True)
        return True
