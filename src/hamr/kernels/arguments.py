"""A launch's arguments against a kernel's parameters: buffers as contiguous NumPy arrays, scalars typed."""

from __future__ import annotations

import numbers

import numpy as np

from hamr.errors import KernelSourceError
from hamr.ops.kernel_source import Function, Param


def checked(kernel: Function, args: tuple) -> list[np.ndarray]:
    """One array per launch parameter: a buffer's own array (written back after the launch), a scalar's 0-d value."""
    params = kernel.launch_params
    if len(args) != len(params):
        names = ", ".join(p.name for p in params)
        raise KernelSourceError(f"kernel '{kernel.name}' takes {len(params)} argument(s) ({names}), got {len(args)}")
    return [_argument(kernel.name, p, a) for p, a in zip(params, args)]


def _argument(kernel: str, param: Param, value) -> np.ndarray:
    where = f"argument '{param.name}' of kernel '{kernel}'"
    if param.kind == "buffer":
        if not isinstance(value, np.ndarray):
            raise KernelSourceError(f"{where} is a buffer: pass a NumPy array, not {type(value).__name__}")
        if value.dtype != np.dtype(param.dtype):
            raise KernelSourceError(f"{where} is a {param.ctype} buffer: the array is {value.dtype}, not {param.dtype}")
        if not value.flags.c_contiguous or not value.flags.writeable:
            raise KernelSourceError(f"{where}: the array must be C-contiguous and writeable")
        if value.size % param.lanes:
            raise KernelSourceError(f"{where}: {value.size} elements do not fill whole {param.ctype} values")
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise KernelSourceError(f"{where} is a {param.ctype}: pass a number, not {type(value).__name__}")
    dtype = np.dtype(param.dtype)
    if dtype.kind in "iu":
        if not isinstance(value, numbers.Integral):
            raise KernelSourceError(f"{where} is a {param.ctype}: {value!r} is not an integer")
        info = np.iinfo(dtype)
        if not info.min <= int(value) <= info.max:
            raise KernelSourceError(f"{where}: {value} does not fit a {param.ctype}")
    return np.array(value, dtype=dtype)


def launch_shape(grid, block, name: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """grid and block as three positive ints each (missing dims are 1)."""
    shapes = []
    for label, dims in (("grid", grid), ("block", block)):
        dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
        if not 1 <= len(dims) <= 3 or not all(isinstance(d, numbers.Integral) and d >= 1 for d in dims):
            raise KernelSourceError(f"launch of '{name}': {label} must be 1 to 3 positive ints, got {dims!r}")
        shapes.append(tuple(int(d) for d in dims) + (1,) * (3 - len(dims)))
    if shapes[1][0] * shapes[1][1] * shapes[1][2] > 1024:
        raise KernelSourceError(f"launch of '{name}': a block of {shapes[1]} has more than 1024 work-items")
    return shapes[0], shapes[1]
