"""Op type -> lowering, filled by the modules of this package."""

from __future__ import annotations

from hamr.targets.native.ops.base import Lowering

LOWERINGS: dict[str, Lowering] = {}


def register(lowering_cls: type[Lowering]) -> type[Lowering]:
    instance = lowering_cls()
    for op in lowering_cls.ops:
        LOWERINGS[op] = instance
    return lowering_cls


def lowering_for(domain: str, op_type: str) -> Lowering | None:
    if domain not in ("", "ai.onnx"):
        from hamr.targets.native.ops.custom import custom_lowering  # custom.py imports the lowerings

        return custom_lowering(domain, op_type)  # a registered custom op (None for onnx's other domains)
    return LOWERINGS.get(op_type)
