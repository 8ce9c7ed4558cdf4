"""Op lowerings for the native targets; importing this package registers them all.

`lowering_for` lives here, above the modules it dispatches to (`registry.py` for onnx's ops,
`custom.py` for registered custom ops), so that no module of this package imports back.
"""

from __future__ import annotations

from hamr.ir.domains import is_onnx_domain
from hamr.targets.native.ops import (  # noqa: F401  (registration)
    attention,
    cast,
    col2im,
    einsum,
    elementwise,
    integer_linalg,
    linalg,
    linear_attention,
    losses,
    movement,
    nn,
    quantize,
    recurrent,
    reduce,
    resize,
    sampling,
    shape_ops,
    topk,
    transformer,
)
from hamr.targets.native.ops.base import Lowering
from hamr.targets.native.ops.custom import custom_lowering
from hamr.targets.native.ops.registry import LOWERINGS

__all__ = ["LOWERINGS", "lowering_for"]


def lowering_for(domain: str, op_type: str) -> Lowering | None:
    if not is_onnx_domain(domain):
        return custom_lowering(domain, op_type)  # a registered custom op (None for onnx's other domains)
    return LOWERINGS.get(op_type)
