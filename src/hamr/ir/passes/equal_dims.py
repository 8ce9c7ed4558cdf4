"""Gives symbolic dimensions that are provably equal one name.

onnx's shape inference names each Conv's output height and width afresh, so the two operands of a residual Add
look unrelated and the targets cannot fuse the Add into its producer. This pass, in topological order:

- names a convolution's or pooling's spatial output dim by its formula over the input dim (kernel, stride, pads,
  dilation, auto_pad, ceil_mode): two of them with one formula over one input dim are equal, and a formula that
  keeps the size (stride 1, pads of dilation * (kernel - 1) in all) gives the input dim back;
- gives an elementwise op's output dim its operands' name when both operands carry that same name there.

Names on the graph's inputs are never replaced; every other value's dims are renamed at the end.
"""

from __future__ import annotations

import onnx_ir as ir

from hamr.ir.domains import is_onnx_domain

WINDOWED = ("Conv", "MaxPool", "AveragePool", "LpPool")
ELEMENTWISE = (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "PRelu",
    "Where",
    "Relu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Clip",
    "LeakyRelu",
    "Tanh",
    "Identity",
)


class _Names:
    """Union-find over dim names; a graph input's name always represents its class."""

    def __init__(self, fixed: set[str]):
        self.parent: dict[str, str] = {}
        self.fixed = fixed

    def find(self, name: str) -> str:
        while name in self.parent:
            name = self.parent[name]
        return name

    def union(self, name: str, representative: str) -> None:
        a, b = self.find(name), self.find(representative)
        if a == b or a in self.fixed and b in self.fixed:
            return
        if a in self.fixed:
            a, b = b, a
        self.parent[a] = b


def _dim_name(dim, names: _Names) -> str | None:
    return names.find(dim.value) if isinstance(dim, ir.SymbolicDim) and dim.value else None


def _ints(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else default


def _window_keys(node: ir.Node, names: _Names) -> list[tuple | str | None] | None:
    """Per spatial axis, the output dim's formula over the named input dim (or that name when it keeps the size)."""
    x = node.inputs[0] if node.inputs else None
    if x is None or x.shape is None or len(x.shape) < 3:
        return None
    spatial = len(x.shape) - 2
    if node.op_type == "Conv":
        w = node.inputs[1] if len(node.inputs) > 1 else None
        if w is None or w.shape is None or len(w.shape) != spatial + 2:
            return None
        kernel = [w.shape[2 + a] for a in range(spatial)]
    else:
        kernel = _ints(node, "kernel_shape", [])
    if len(kernel) != spatial or not all(isinstance(k, int) for k in kernel):
        return None
    strides = _ints(node, "strides", [1] * spatial)
    dilations = _ints(node, "dilations", [1] * spatial)
    pads = _ints(node, "pads", [0] * 2 * spatial)
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    ceil = node.attributes.get_int("ceil_mode", 0)
    if len(strides) != spatial or len(dilations) != spatial or len(pads) != 2 * spatial:
        return None
    keys: list[tuple | str | None] = []
    for a in range(spatial):
        name = _dim_name(x.shape[2 + a], names)
        extent = dilations[a] * (kernel[a] - 1)
        if name is None:
            keys.append(None)
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            keys.append(name if strides[a] == 1 else ("same", name, strides[a]))
        elif auto_pad in ("NOTSET", "VALID"):
            total = 0 if auto_pad == "VALID" else pads[a] + pads[a + spatial]
            keep = strides[a] == 1 and total == extent
            keys.append(name if keep else ("window", name, total - extent, strides[a], ceil))
        else:
            keys.append(None)
    return keys


class EqualDimsPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        fixed = {d.value for v in graph.inputs if v.shape is not None for d in v.shape if isinstance(d, ir.SymbolicDim)}
        names = _Names({f for f in fixed if f})
        formulas: dict[tuple, str] = {}
        for node in graph:
            if not is_onnx_domain(node.domain) or not node.outputs or node.outputs[0].shape is None:
                continue
            out = node.outputs[0].shape
            if node.op_type in WINDOWED:
                keys = _window_keys(node, names)
                if keys is None or len(out) != len(keys) + 2:
                    continue
                for a, key in enumerate(keys):
                    name = _dim_name(out[2 + a], names)
                    if key is None or name is None:
                        continue
                    names.union(name, formulas.setdefault(key, name) if isinstance(key, tuple) else key)
            elif node.op_type in ELEMENTWISE:
                self._elementwise(node, out, names)
        return ir.passes.PassResult(model, self._rename(graph, names))

    @staticmethod
    def _elementwise(node: ir.Node, out: ir.Shape, names: _Names) -> None:
        operands = [v.shape for v in node.inputs if v is not None]
        if not operands or any(s is None or len(s) > len(out) for s in operands):
            return
        for a in range(len(out)):
            name = _dim_name(out[a], names)
            if name is None:
                continue
            dims = [s[a - len(out) + len(s)] for s in operands if a - len(out) + len(s) >= 0]
            seen = {_dim_name(d, names) for d in dims if d != 1}
            if len(seen) == 1 and None not in seen:
                names.union(name, seen.pop())

    @staticmethod
    def _rename(graph: ir.Graph, names: _Names) -> bool:
        if not names.parent:
            return False
        for node in graph:
            for value in node.outputs:
                if value.shape is None or value.is_graph_input():
                    continue
                dims = [ir.SymbolicDim(names.find(d.value)) if _dim_name(d, names) else d for d in value.shape]
                value.shape = ir.Shape(dims)
        return True
