"""Outputs a remote agent sends back, checked against the model's signature before the pool records them.

An agent is another machine: the pool does not take its word that what it posts is what the
model computes. Exactly the signature's outputs, each with its dtype, its rank and its fixed
dimensions, and one size per symbolic dimension across them; else one line saying what differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hamr.format.container import open_container
from hamr.ir.signature import Signature, TensorSpec


def signature_of_file(path: str | Path) -> Signature:
    """The signature in a stored .hamr file's manifest (the file was verified when it was uploaded)."""
    return Signature.from_json(open_container(path, verify=False).manifest["signature"])


def outputs_mismatch(signature: Signature, outputs: dict) -> str | None:
    """Why `outputs` are not what the model gives, or None when they are."""
    expected = {spec.name: spec for spec in signature.outputs}
    extra = sorted(name for name in outputs if name not in expected)
    if extra:
        return f"output '{extra[0]}' is not one of the model's outputs ({', '.join(expected) or 'none'})"
    missing = [name for name in expected if name not in outputs]
    if missing:
        return f"missing output '{missing[0]}' ({expected[missing[0]].describe()})"
    sizes: dict[str, tuple[int, str]] = {}
    for name, value in outputs.items():
        spec = expected[name]
        why = _tensor_mismatch(spec, np.asarray(value), sizes) if spec.kind == "tensor" else None
        if why:
            return why
    return None


def _tensor_mismatch(spec: TensorSpec, array: np.ndarray, sizes: dict[str, tuple[int, str]]) -> str | None:
    shown = f"output '{spec.name}' is {array.dtype.name}{list(array.shape)}; the model gives {spec.describe()}"
    if spec.dtype is not None and array.dtype.name != spec.dtype:
        return shown
    if spec.shape is None:
        return None
    if array.ndim != len(spec.shape):
        return shown
    for dim, size in zip(spec.shape, array.shape, strict=True):
        if isinstance(dim, int) and dim != size:
            return shown
        if isinstance(dim, str):
            bound, where = sizes.setdefault(dim, (size, spec.name))
            if bound != size:
                return f"{shown}, but output '{where}' has {dim}={bound}"
    return None


__all__ = ["outputs_mismatch", "signature_of_file"]
