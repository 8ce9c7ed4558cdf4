"""Folds an inference BatchNormalization into the Conv before it: W' = W * s, B' = (B - mean) * s + beta, where
s = scale / sqrt(var + epsilon), when the Conv's weights and every BatchNormalization parameter are constant
and the Conv's output feeds nothing else. The Conv keeps anchoring its fused epilogue (Relu, Clip, ...)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain

FLOAT_TYPES = (np.float32, np.float64)


def _const(value: ir.Value | None) -> np.ndarray | None:
    return None if value is None or value.const_value is None else value.const_value.numpy()


def _unique(graph: ir.Graph, name: str) -> str:
    candidate, n = name, 0
    while candidate in graph.initializers:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


class FoldBatchNormIntoConvPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for bn in list(graph):
            if bn.op_type != "BatchNormalization" or not is_onnx_domain(bn.domain) or len(bn.inputs) != 5:
                continue
            if bn.attributes.get_int("training_mode", 0) or any(
                o.uses() or o.is_graph_output() for o in bn.outputs[1:]
            ):
                continue
            x = bn.inputs[0]
            conv = x.producer() if x is not None else None
            if conv is None or conv.op_type != "Conv" or not is_onnx_domain(conv.domain) or conv.graph is not graph:
                continue
            if len(x.uses()) != 1 or x.is_graph_output():
                continue
            params = [_const(v) for v in bn.inputs[1:]]
            w = _const(conv.inputs[1])
            bias = _const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None
            if (
                w is None
                or any(p is None for p in params)
                or (len(conv.inputs) > 2 and conv.inputs[2] and bias is None)
            ):
                continue
            if w.dtype.type not in FLOAT_TYPES or any(p.shape != (w.shape[0],) for p in params):
                continue
            self._fold(graph, conv, bn, w, bias, params)
            modified = True
        return ir.passes.PassResult(model, modified)

    @staticmethod
    def _fold(graph: ir.Graph, conv: ir.Node, bn: ir.Node, w, bias, params) -> None:
        scale, beta, mean, var = (p.astype(np.float64) for p in params)
        eps = bn.attributes.get_float("epsilon", 1e-5)
        s = scale / np.sqrt(var + eps)
        new_w = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        base = bias.astype(np.float64) if bias is not None else np.zeros_like(s)
        new_b = ((base - mean) * s + beta).astype(w.dtype)
        w_value = ir.Value(name=_unique(graph, f"{conv.inputs[1].name}_bn"), const_value=ir.tensor(new_w))
        graph.register_initializer(w_value)
        b_value = ir.Value(name=_unique(graph, f"{conv.outputs[0].name}_bn_bias"), const_value=ir.tensor(new_b))
        graph.register_initializer(b_value)
        if len(conv.inputs) < 3:
            conv.resize_inputs(3)
        conv.replace_input_with(1, w_value)
        conv.replace_input_with(2, b_value)
        out, y = conv.outputs[0], bn.outputs[0]
        if y.is_graph_output():
            name = y.name
            y.replace_all_uses_with(out, replace_graph_outputs=True)
            y.name = None
            out.name = name
        else:
            y.replace_all_uses_with(out)
        graph.remove(bn, safe=True)
