"""Access to onnx.reference's op implementations, one node at a time."""

from __future__ import annotations

import functools
import importlib
from typing import Any

import onnx
from onnx import defs, helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import RuntimeContextError
from onnx.reference.ops import load_op

from hamr.ir.domains import is_onnx_domain

#: Ops whose results change between runs; never folded into constants.
NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)


_DOMAIN_LOADERS = {
    "ai.onnx.ml": "onnx.reference.ops.aionnxml",
    "ai.onnx.preview": "onnx.reference.ops.aionnx_preview",
    "ai.onnx.preview.training": "onnx.reference.ops.aionnx_preview_training",
    "experimental": "onnx.reference.ops.experimental",
}


@functools.lru_cache(maxsize=4096)
def has_kernel(domain: str, op_type: str, version: int) -> bool:
    """Whether onnx.reference implements (domain, op_type) at this opset version.

    Ops defined by a context-dependent function (Gelu, GroupNormalization, ...) count:
    ReferenceEvaluator expands them once input types are known.
    """
    if is_onnx_domain(domain):
        loader = load_op
        domain = ""
    elif domain in _DOMAIN_LOADERS:
        loader = importlib.import_module(_DOMAIN_LOADERS[domain]).load_op
    else:
        return False
    try:
        loader(domain, op_type, version)
    except RuntimeContextError:
        return True
    except Exception:  # the loaders raise several types for unknown ops
        return _has_function_body(domain, op_type, version)
    return True


def _has_function_body(domain: str, op_type: str, version: int) -> bool:
    try:
        schema = defs.get_schema(op_type, version, domain)
    except defs.SchemaError:
        return False
    return schema.has_function or schema.has_context_dependent_function


def evaluate_node(node: onnx.NodeProto, opsets: dict[str, int], inputs: list[Any]) -> list[Any]:
    """Run one node on concrete inputs (used by constant folding)."""
    names = [name for name in node.input if name]
    graph = helper.make_graph(
        [node],
        "fold",
        [helper.make_value_info(n, onnx.TypeProto()) for n in names],
        [helper.make_value_info(n, onnx.TypeProto()) for n in node.output if n],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    feeds = {n: v for n, v in zip(node.input, inputs) if n}
    from hamr.ir.onnx_reference.overrides import reference_ops

    return ReferenceEvaluator(model, new_ops=reference_ops(model)).run(None, feeds)
