"""The reference target: the portable graph interpreted with onnx.reference's NumPy op implementations.

It runs everywhere and is the numerical oracle for every other target.
"""

from hamr.targets.reference.target import ReferenceTarget

__all__ = ["ReferenceTarget"]
