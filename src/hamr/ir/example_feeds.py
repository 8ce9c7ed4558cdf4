"""Plausible inputs for a signature, for the demo and benchmarks."""

from __future__ import annotations

import numpy as np

from hamr.ir.signature import Signature


def example_feeds(signature: Signature, dims: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs; symbolic dims take `dims[name]`, else 1 for batch-like names and 16 otherwise."""
    dims = dims or {}
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in signature.inputs:
        if spec.kind != "tensor" or spec.dtype is None or spec.shape is None:
            raise ValueError(f"cannot invent a value for input '{spec.name}' ({spec.describe()})")
        shape = [d if isinstance(d, int) else dims.get(d or "", 1 if _batch_like(d) else 16) for d in spec.shape]
        dtype = np.dtype(spec.dtype)
        lowered = spec.name.lower()
        if "mask" in lowered:
            value = np.ones(shape, dtype=dtype)
        elif "type_ids" in lowered:
            value = np.zeros(shape, dtype=dtype)
        elif dtype.kind in "iu":
            value = rng.integers(0, 256, size=shape).astype(dtype)
        elif dtype.kind == "b":
            value = rng.random(shape) > 0.5
        else:
            value = rng.random(shape).astype(dtype)
        feeds[spec.name] = value
    return feeds


def _batch_like(name: str | None) -> bool:
    return name is None or "batch" in name.lower() or name.startswith("unk")
