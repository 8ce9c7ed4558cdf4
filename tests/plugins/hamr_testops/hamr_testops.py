"""Three custom ops of the domain com.example.testops, for hamr's tests.

- ``ScaledTanh(x; alpha=1, beta=1) = alpha * tanh(beta * x)``: kernels for cpu and opencl.
- ``Hypot(a, b) = sqrt(a*a + b*b)`` with broadcasting: a cpu kernel only (opencl falls back).
- ``RowSum(x; strict=0)``: the sum over the last axis (the rank drops by one); reference only.
  With ``strict=1`` it refuses negative values with a ValueError.
"""

from __future__ import annotations

import numpy as np

from hamr.ops import CustomOp, Elementwise

DOMAIN = "com.example.testops"


def _scaled_tanh(x, alpha=1.0, beta=1.0):
    return (alpha * np.tanh(beta * x)).astype(x.dtype)


def _row_sum(x, strict=0):
    if strict and (x < 0).any():
        raise ValueError(f"RowSum(strict=1) got {int((x < 0).sum())} negative value(s)")
    return x.sum(axis=-1).astype(x.dtype)


def _row_sum_types(dtypes, shapes, attributes):
    shape = shapes[0]
    return [(dtypes[0], None if shape is None else tuple(shape[:-1]))]


_TANH = Elementwise("{alpha} * tanh({beta} * {in0})")

SCALED_TANH = CustomOp(
    domain=DOMAIN,
    name="ScaledTanh",
    reference=_scaled_tanh,
    attributes={"alpha": 1.0, "beta": 1.0},
    kernels={"cpu": _TANH, "opencl": _TANH},
    doc="alpha * tanh(beta * x)",
)

HYPOT = CustomOp(
    domain=DOMAIN,
    name="Hypot",
    reference=lambda a, b: np.hypot(a, b).astype(a.dtype),
    kernels={"cpu": "sqrt({in0} * {in0} + {in1} * {in1})"},
    doc="sqrt(a*a + b*b), broadcasting",
)

ROW_SUM = CustomOp(
    domain=DOMAIN,
    name="RowSum",
    reference=_row_sum,
    infer=_row_sum_types,
    attributes={"strict": 0},
    doc="the sum over the last axis; strict=1 refuses negative values",
)


def elementwise_ops() -> list[CustomOp]:
    """The entry point `testops`: a factory, the form a plugin uses to build its ops lazily."""
    return [SCALED_TANH, HYPOT]
