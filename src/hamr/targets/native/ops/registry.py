"""Op type -> lowering, filled by the modules of this package (`lowering_for` in the package also finds custom ops)."""

from __future__ import annotations

from hamr.targets.native.ops.base import Lowering

LOWERINGS: dict[str, Lowering] = {}


def register(lowering_cls: type[Lowering]) -> type[Lowering]:
    instance = lowering_cls()
    for op in lowering_cls.ops:
        LOWERINGS[op] = instance
    return lowering_cls
