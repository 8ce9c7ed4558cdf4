"""Gang jobs (n_devices > 1) run data-parallel: the batch is split across the gang's devices.

Every input is split along its first axis into n nearly equal shards (numpy.array_split), one per
device; each device runs the executable on its shard, and the outputs are joined back along the
first axis, in shard order. So a gang job needs batch-major inputs and outputs with one batch
size, at least n rows of it; anything else fails the job with a line that says which tensor.
"""

from __future__ import annotations

import numpy as np

from hamr.errors import HamrError


class GangError(HamrError):
    """A gang job's tensors cannot be split along, or joined back along, a batch axis."""


def split_inputs(inputs: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    rows = {name: (value.shape[0] if value.ndim else None) for name, value in inputs.items()}
    if not inputs:
        raise GangError(f"a gang job of {n} devices splits its inputs along the batch axis, and it has no inputs")
    scalar = next((name for name, r in rows.items() if r is None), None)
    if scalar is not None:
        raise GangError(f"a gang job splits every input along its first axis: input '{scalar}' is a scalar")
    sizes = set(rows.values())
    if len(sizes) != 1:
        listed = ", ".join(f"'{name}' {r}" for name, r in rows.items())
        raise GangError(f"a gang job's inputs must have one batch size (first axis), they have {listed}")
    (batch,) = sizes
    if batch < n:
        raise GangError(f"a gang job of {n} devices needs a batch of at least {n} rows; its inputs have {batch}")
    parts = {name: np.array_split(value, n) for name, value in inputs.items()}
    return [{name: np.ascontiguousarray(split[k]) for name, split in parts.items()} for k in range(n)]


def merge_outputs(shards: list[dict[str, np.ndarray]], rows: list[int]) -> dict[str, np.ndarray]:
    """Join each output of the shards (in order) along its first axis; `rows`: each shard's batch size."""
    merged = {}
    for name in shards[0]:
        parts = [shard[name] for shard in shards]
        for k, (part, expected) in enumerate(zip(parts, rows, strict=True)):
            if part.ndim == 0 or part.shape[0] != expected:
                first = "a scalar" if part.ndim == 0 else f"{part.shape[0]} rows"
                raise GangError(
                    f"output '{name}' of shard {k} has {first} for a shard of {expected}: "
                    "a gang job's outputs must be batch-major"
                )
        merged[name] = np.concatenate(parts, axis=0)
    return merged


__all__ = ["GangError", "merge_outputs", "split_inputs"]
