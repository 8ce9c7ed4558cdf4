"""Checks feeds against the signature before anything runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from hamr.errors import InputError
from hamr.ir.signature import Signature, TensorSpec


def validate_feeds(signature: Signature, feeds: dict[str, Any]) -> dict[str, Any]:
    expected = {s.name: s for s in signature.inputs}
    unknown = [name for name in feeds if name not in expected]
    if unknown:
        raise InputError(f"unknown input '{unknown[0]}'; the model's inputs are: {', '.join(expected) or 'none'}")
    missing = [name for name in expected if name not in feeds]
    if missing:
        raise InputError(f"missing input '{missing[0]}' ({expected[missing[0]].describe()})")
    bindings: dict[str, tuple[int, str]] = {}
    checked = {}
    for name, value in feeds.items():
        spec = expected[name]
        checked[name] = _check_tensor(spec, value, bindings) if spec.kind == "tensor" else value
    return checked


def _check_tensor(spec: TensorSpec, value: Any, bindings: dict[str, tuple[int, str]]) -> Any:
    # device values (carried state, bound inputs) are checked by their shape and dtype, never read back
    on_device = not isinstance(value, np.ndarray) and hasattr(value, "shape") and hasattr(value, "dtype")
    array = value if isinstance(value, np.ndarray) or on_device else np.asarray(value)
    if spec.dtype is not None and _dtype_name(array) != spec.dtype:
        raise InputError(f"input '{spec.name}' has dtype {_dtype_name(array)}; expected {spec.dtype}")
    if spec.shape is None:
        return array
    if array.ndim != len(spec.shape):
        raise InputError(
            f"input '{spec.name}' has shape {list(array.shape)} (rank {array.ndim}); expected {spec.describe()}"
        )
    for axis, (dim, size) in enumerate(zip(spec.shape, array.shape)):
        if isinstance(dim, int) and dim != size:
            raise InputError(
                f"input '{spec.name}' has shape {list(array.shape)}; expected {spec.describe()} (axis {axis})"
            )
        if isinstance(dim, str):
            bound = bindings.setdefault(dim, (size, spec.name))
            if bound[0] != size:
                raise InputError(
                    f"input '{spec.name}' has {dim}={size} on axis {axis}, but input '{bound[1]}' has {dim}={bound[0]}"
                )
    return array


def dim_sizes(signature: Signature, feeds: dict[str, Any]) -> dict[str, int]:
    """Sizes that the given feeds bind to the signature's symbolic dimensions."""
    sizes: dict[str, int] = {}
    for spec in signature.inputs:
        value = feeds.get(spec.name)
        shape = getattr(value, "shape", None)
        if spec.shape is None or shape is None or len(shape) != len(spec.shape):
            continue
        for dim, size in zip(spec.shape, shape):
            if isinstance(dim, str):
                sizes.setdefault(dim, int(size))
    return sizes


def _dtype_name(array: np.ndarray) -> str:
    if array.dtype.kind in "OU":
        return "str"
    return array.dtype.name


class FeedValidator:
    """`validate_feeds` for one signature, remembering the (name, dtype, shape) sets it has accepted.

    A run whose feeds are all NumPy arrays of an accepted set skips the checks; anything else goes
    through `validate_feeds`. At most `limit` sets are remembered.
    """

    def __init__(self, signature: Signature, limit: int = 64):
        self.signature = signature
        self.limit = limit
        self.accepted: set[tuple] = set()

    def __call__(self, feeds: dict[str, Any]) -> dict[str, Any]:
        key = tuple((name, value.dtype, value.shape) for name, value in feeds.items() if type(value) is np.ndarray)
        arrays_only = len(key) == len(feeds)
        if arrays_only and key in self.accepted:
            return feeds
        checked = validate_feeds(self.signature, feeds)
        if arrays_only and len(self.accepted) < self.limit:
            self.accepted.add(key)
        return checked
