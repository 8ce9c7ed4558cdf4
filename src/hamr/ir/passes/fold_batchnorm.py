"""Removes inference BatchNormalizations whose parameters are constant, with s = scale / sqrt(var + epsilon) and
t = beta - mean * s:

- after a Conv whose output feeds nothing else and whose weights are known at load, the normalisation folds into the
  Conv: W' = W * s, B' = B * s + t. Weights known now are scaled here; weights computed at load (`ConstantOfShape`,
  ...) get a `Mul` node that the targets compute with them at load. The Conv keeps anchoring its fused epilogue.
- anywhere else it becomes `Mul(x, s) + t` over the channel axis, which fuses into its producer's kernel like any
  elementwise chain.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain
from hamr.ir.passes.graph_match import FreshNames, constant, known_at_load, replace_value

FLOAT_TYPES = (np.float32, np.float64)
FLOAT_IR_TYPES = (ir.DataType.FLOAT, ir.DataType.DOUBLE)


def _fill(value: ir.Value | None) -> tuple[float, ir.Value] | None:
    """(fill value, shape input) of a value made by a ConstantOfShape whose shape is known now."""
    node = value.producer() if value is not None else None
    if (
        node is None
        or node.op_type != "ConstantOfShape"
        or not is_onnx_domain(node.domain)
        or constant(node.inputs[0]) is None
    ):
        return None
    attr = node.attributes.get("value")
    fill = attr.as_tensor().numpy().reshape(-1)[0] if attr is not None else 0.0
    return float(fill), node.inputs[0]


class _Names(FreshNames):
    def node(self, op: str, inputs: list[ir.Value], like: ir.Value, name: str) -> ir.Node:
        out = ir.Value(name=self.fresh(name), type=like.type, shape=like.shape)
        return ir.Node("", op, inputs, outputs=[out], name=self.fresh(f"{name}_node"))


class FoldBatchNormIntoConvPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        names = _Names(graph)
        memo: dict[str, bool] = {}
        modified = False
        for bn in list(graph):
            affine = _affine(bn)
            if affine is None:
                continue
            s, t = affine
            conv = _conv_to_fold(bn, len(s), graph, memo)
            if conv is not None:
                self._fold(graph, names, conv, bn, s, t)
                modified = True
            elif _as_channel_affine(graph, names, bn, s, t):
                modified = True
        return ir.passes.PassResult(model, modified)

    @staticmethod
    def _fold(graph: ir.Graph, names: _Names, conv: ir.Node, bn: ir.Node, s: np.ndarray, t: np.ndarray) -> None:
        w_value = conv.inputs[1]
        w = constant(w_value)
        dtype = w.dtype if w is not None else w_value.dtype.numpy()
        rank = len(w_value.shape) if w is None else w.ndim
        before: list[ir.Node] = []
        fill = _fill(w_value)
        if w is not None:
            new_w = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
            w_new = names.initializer(f"{w_value.name}_bn", new_w)
        elif fill is not None:  # a ConstantOfShape fill scaled per channel is that scale expanded to the shape
            column = (fill[0] * s).reshape((-1,) + (1,) * (rank - 1)).astype(dtype)
            expand = names.node(
                "Expand",
                [names.initializer(f"{w_value.name}_bn", column), fill[1]],
                w_value,
                f"{w_value.name}_bn_expanded",
            )
            before.append(expand)
            w_new = expand.outputs[0]
        else:
            factor = names.initializer(f"{w_value.name}_bn_scale", s.reshape((-1,) + (1,) * (rank - 1)).astype(dtype))
            mul = names.node("Mul", [w_value, factor], w_value, f"{w_value.name}_bn")
            before.append(mul)
            w_new = mul.outputs[0]
        bias_value = conv.inputs[2] if len(conv.inputs) > 2 else None
        bias = constant(bias_value)
        if bias is None and (bias_fill := _fill(bias_value)) is not None:
            bias = np.full(len(s), bias_fill[0])
        if bias_value is None or bias is not None:
            base = bias.astype(np.float64) if bias is not None else np.zeros_like(s)
            b_new = names.initializer(f"{conv.outputs[0].name}_bn_bias", (base * s + t).astype(dtype))
        else:
            scaled = names.node(
                "Mul",
                [bias_value, names.initializer(f"{bias_value.name}_bn_scale", s.astype(dtype))],
                bias_value,
                f"{bias_value.name}_bn_scaled",
            )
            shift = names.initializer(f"{bias_value.name}_bn_shift", t.astype(dtype))
            shifted = names.node("Add", [scaled.outputs[0], shift], bias_value, f"{conv.outputs[0].name}_bn_bias")
            before += [scaled, shifted]
            b_new = shifted.outputs[0]
        if before:
            graph.insert_before(conv, before)
        if len(conv.inputs) < 3:
            conv.resize_inputs(3)
        conv.replace_input_with(1, w_new)
        conv.replace_input_with(2, b_new)
        _replace_output(graph, bn, conv.outputs[0])


def _affine(bn: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) in float64 for an inference BatchNormalization whose parameters are known now."""
    if bn.op_type != "BatchNormalization" or not is_onnx_domain(bn.domain) or len(bn.inputs) != 5:
        return None
    if bn.attributes.get_int("training_mode", 0) or any(o.uses() or o.is_graph_output() for o in bn.outputs[1:]):
        return None
    if bn.inputs[0] is None or bn.inputs[0].dtype not in FLOAT_IR_TYPES:
        return None
    params = [constant(v) for v in bn.inputs[1:]]
    if any(p is None or p.dtype.type not in FLOAT_TYPES or p.ndim != 1 for p in params):
        return None
    if len({p.shape for p in params}) != 1:
        return None
    scale, beta, mean, var = (p.astype(np.float64) for p in params)
    s = scale / np.sqrt(var + bn.attributes.get_float("epsilon", 1e-5))
    return s, beta - mean * s


def _conv_to_fold(bn: ir.Node, channels: int, graph: ir.Graph, memo: dict) -> ir.Node | None:
    x = bn.inputs[0]
    conv = x.producer()
    if conv is None or conv.op_type != "Conv" or not is_onnx_domain(conv.domain) or conv.graph is not graph:
        return None
    if len(x.uses()) != 1 or x.is_graph_output() or len(conv.inputs) < 2 or conv.inputs[1] is None:
        return None
    w = conv.inputs[1]
    if w.dtype not in FLOAT_IR_TYPES or w.shape is None or not w.shape.is_static() or w.shape[0] != channels:
        return None
    if not known_at_load(w, graph, memo):
        return None
    bias = conv.inputs[2] if len(conv.inputs) > 2 else None
    if bias is not None and not known_at_load(bias, graph, memo):
        return None
    return conv


def _as_channel_affine(graph: ir.Graph, names: _Names, bn: ir.Node, s: np.ndarray, t: np.ndarray) -> bool:
    """BatchNormalization(x) -> Mul(x, s) + t, with s and t shaped to broadcast over x's channel axis."""
    x = bn.inputs[0]
    if x.shape is None or len(x.shape) < 2:
        return False
    channels = x.shape[1]
    if isinstance(channels, int) and channels != len(s):
        return False
    dtype = x.dtype.numpy()
    shape = (-1,) + (1,) * (len(x.shape) - 2)
    y = bn.outputs[0]
    scale = names.initializer(f"{bn.name}_scale", s.reshape(shape).astype(dtype))
    shift = names.initializer(f"{bn.name}_shift", t.reshape(shape).astype(dtype))
    mul = names.node("Mul", [x, scale], y, f"{y.name}_scaled")
    add = names.node("Add", [mul.outputs[0], shift], y, f"{y.name}_shifted")
    graph.insert_before(bn, [mul, add])
    _replace_output(graph, bn, add.outputs[0])
    return True


def _replace_output(graph: ir.Graph, bn: ir.Node, out: ir.Value) -> None:
    replace_value(bn.outputs[0], out)
    graph.remove(bn, safe=True)
