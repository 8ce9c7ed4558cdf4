"""Op lowerings for the native targets; importing this package registers them all."""

from __future__ import annotations

from hamr.targets.native.ops import elementwise, linalg, movement, nn, reduce, shape_ops  # noqa: F401  (registration)
from hamr.targets.native.ops.base import Lowering
from hamr.targets.native.ops.custom import custom_lowering
from hamr.targets.native.ops.registry import LOWERINGS

__all__ = ["LOWERINGS", "lowering_for"]


def lowering_for(domain: str, op_type: str) -> Lowering | None:
    if domain not in ("", "ai.onnx"):
        return custom_lowering(domain, op_type)  # a registered custom op (None for onnx's other domains)
    return LOWERINGS.get(op_type)
