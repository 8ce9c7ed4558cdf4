"""torch.library ops as hamr custom ops: the ONNX exporter's translation of each op a hamr ``CustomOp`` claims.

A ``CustomOp`` with ``torch_op="namespace::name"`` claims that torch op. Every call of it in an exported
program becomes one node of the custom op's domain and name: the call's tensor arguments are the node's
inputs in order, its other arguments the node's attributes (by their names in the torch op's schema), and
its returns the node's outputs. Loaded by the torch frontend only, with torch already imported.
"""

from __future__ import annotations

from typing import Any

import onnx

from hamr.errors import UnsupportedOpError
from hamr.ops.definition import CustomOp
from hamr.ops.registry import registered

# What the exporter's own ops are called from; a program calling nothing else needs no custom op.
_TORCH_NAMESPACES = frozenset({"aten", "prims", "higher_order", "_operator", "onnx"})
_TENSOR_TYPES = ("Tensor", "Tensor?")
_ATTRIBUTE_TYPES = {
    "float": "FLOAT",
    "int": "INT",
    "SymInt": "INT",
    "bool": "INT",
    "str": "STRING",
    "float[]": "FLOATS",
    "int[]": "INTS",
    "SymInt[]": "INTS",
}
_ANY_TENSOR = [
    f"tensor({t})"
    for t in (
        "float",
        "double",
        "float16",
        "bfloat16",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
    )
]


def translation_table(program) -> dict[Any, Any]:
    """``custom_translation_table`` for ``torch.onnx.export``: each custom torch op of `program` that a
    registered hamr CustomOp claims (``torch_op``), to the function that writes its node."""
    candidates = {target for target in _called_ops(program) if target.namespace not in _TORCH_NAMESPACES}
    if not candidates:
        return {}
    claimed = {op.torch_op: op for op in registered().values() if op.torch_op}
    table = {}
    for target in candidates:
        custom = claimed.get(_torch_op_name(target))
        if custom is not None:
            table[target] = _translation(target, custom)
    return table


def _called_ops(program) -> set:
    """The OpOverloads the program's graphs (its subgraphs too) call."""
    graphs = [module.graph for module in program.graph_module.modules() if hasattr(module, "graph")]
    return {
        node.target
        for graph in graphs
        for node in graph.nodes
        if node.op == "call_function" and hasattr(node.target, "namespace") and hasattr(node.target, "_schema")
    }


def _torch_op_name(target) -> str:
    return target.name().split(".")[0]  # "namespace::name.overload" -> "namespace::name"


def _translation(target, custom: CustomOp):
    from onnxscript import values

    arguments = list(target._schema.arguments)
    is_tensor = [str(argument.type) in _TENSOR_TYPES for argument in arguments]
    op = values.Op(values.Opset(custom.domain, 1), custom.name, _op_schema(target, custom))

    def translate(*args, **kwargs):
        inputs = [value for value, tensor in zip(args, is_tensor) if tensor]
        attributes = {argument.name: value for argument, value, tensor in zip(arguments, args, is_tensor) if not tensor}
        return op(*inputs, **attributes, **kwargs)

    return translate


def _op_schema(target, custom: CustomOp) -> onnx.defs.OpSchema:
    """The node's schema, built for the exporter alone (never registered with onnx)."""
    schema = target._schema
    parameter, attribute_type = onnx.defs.OpSchema.FormalParameter, onnx.defs.OpSchema.AttrType
    inputs, attributes = [], []
    for argument in schema.arguments:
        kind = str(argument.type)
        if kind in _TENSOR_TYPES:
            inputs.append(parameter(argument.name, f"T{len(inputs)}"))
        elif kind in _ATTRIBUTE_TYPES:
            attributes.append(
                onnx.defs.OpSchema.Attribute(argument.name, getattr(attribute_type, _ATTRIBUTE_TYPES[kind]), "")
            )
        else:
            raise UnsupportedOpError(
                f"torch op {_torch_op_name(target)} (hamr custom op {custom.label}): argument {argument.name!r} "
                f"of type {kind} is neither a tensor nor an attribute type ({', '.join(_ATTRIBUTE_TYPES)})",
                [custom.label],
            )
    outputs = [parameter(f"output{i}", f"O{i}") for i in range(len(schema.returns))]
    constraints = [(p.type_str, _ANY_TENSOR, "") for p in (*inputs, *outputs)]
    return onnx.defs.OpSchema(
        custom.name,
        custom.domain,
        1,
        inputs=inputs,
        outputs=outputs,
        type_constraints=constraints,
        attributes=attributes,
    )
