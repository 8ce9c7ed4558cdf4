"""Portable kernels on the host CPU: the C dialect built by the cpu target's compiler, called through ctypes."""

from __future__ import annotations

import ctypes

import numpy as np

from hamr.errors import KernelError
from hamr.ops.kernel_source import Function, KernelSource
from hamr.targets.cpu import build, isa
from hamr.targets.native.render.c import CRenderer


class HostKernels:
    def __init__(self, source: KernelSource):
        level = isa.host_levels()[0]
        self.library = ctypes.CDLL(str(build.build_many(CRenderer().portable(source), [level])[level]))

    def launch(self, kernel: Function, grid, block, arrays: list[np.ndarray], shared_bytes: int) -> None:
        entry = getattr(self.library, f"hk_{kernel.name}")
        entry.restype = ctypes.c_int
        argv = (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])
        dims = [(ctypes.c_long * 3)(*d) for d in (grid, block)]
        failed = entry(dims[0], dims[1], argv, ctypes.c_long(shared_bytes))
        if failed == 1:
            raise KernelError(
                f"kernel '{kernel.name}' on cpu: could not allocate its work-items' stacks or local memory"
            )
        if failed:
            raise KernelError(
                f"kernel '{kernel.name}' on cpu reached a barrier hamr did not see in its source "
                "(call barrier or H_SHFL_* by name, or through a #define of this source)"
            )
