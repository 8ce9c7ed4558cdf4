"""Triton kernels run by Triton's interpreter on host memory (no GPU, no torch): how CI checks their results.

The interpreter reads tensors through `data_ptr()` and a torch-like dtype and storage; `HostPointer` gives it
that for a raw host address. `kernels.py` is loaded a second time with TRITON_INTERPRET=1, so that its
functions, helpers included, are interpreted ones.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

from hamr.targets.gpu.triton import aot

_POINTER_DTYPES = {"*fp32": "float32", "*i64": "int64"}


class _Dtype:
    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return "torch." + self.name  # what triton's type mangling reads


# one object per dtype, alive for good: triton caches the type it mangles a dtype object to by the object
_DTYPES = {name: _Dtype(name) for name in _POINTER_DTYPES.values()}


class HostPointer:
    """A host address as the interpreter takes a tensor argument."""

    def __init__(self, address: int, dtype: str):
        self.address, self.dtype = address, _DTYPES[dtype]

    def data_ptr(self) -> int:
        return self.address

    # the interpreter copies "device" storages to the host and back: here they are the same memory
    def untyped_storage(self):
        return self

    def cpu(self):
        return self

    def new_empty(self, *args, **kwargs):
        return HostPointer(self.address, self.dtype.name)

    def set_(self, storage, *args):
        self.address = storage.address
        return self

    def storage_offset(self) -> int:
        return 0

    def size(self) -> tuple:
        return ()

    def stride(self) -> tuple:
        return ()

    def copy_(self, other) -> None:
        pass


@functools.cache
def interpreted_kernels():
    """kernels.py, loaded afresh under TRITON_INTERPRET=1."""
    if not aot.available():
        raise RuntimeError(f"triton is not installed: {aot.EXTRA}")
    from hamr.targets.gpu.triton import kernels

    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        name = "hamr.targets.gpu.triton._interpreted_kernels"
        spec = importlib.util.spec_from_file_location(name, Path(kernels.__file__))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before
    return module


def launch(spec: dict, grid: tuple, args: list[tuple[str, int]]) -> None:
    """One launch of `spec` as a driver would get it: its arguments in order, the two scratch pointers last."""
    function = interpreted_kernels().KERNELS[spec["kernel"]]
    signature = spec["signature"]
    runtime = [name for name, kind in signature.items() if kind != "constexpr"]
    values = args[: len(runtime)]
    if len(args) != len(runtime) + 2:
        raise ValueError(f"{spec['name']}: {len(args)} arguments, expected {len(runtime)} and two scratch pointers")
    call = {}
    for name, (kind, value) in zip(runtime, values):
        call[name] = HostPointer(value, _POINTER_DTYPES[signature[name]]) if kind == "ptr" else int(value)
    call.update({name: None for name in spec["unused"]})
    function[tuple(grid)](**call, **spec["constexprs"])
