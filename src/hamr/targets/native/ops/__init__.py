"""Op lowerings for the native targets; importing this package registers them all."""

from hamr.targets.native.ops import elementwise, linalg, movement, nn, reduce, shape_ops  # noqa: F401  (registration)
from hamr.targets.native.ops.registry import LOWERINGS, lowering_for

__all__ = ["LOWERINGS", "lowering_for"]
