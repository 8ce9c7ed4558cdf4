"""A DeviceApi over host memory whose launches run the variant's Triton kernels in Triton's interpreter.

Everything else is hamr's real GPU path: the loader's choice of binaries, the plan's arena and parameter table,
the argument packing with the scratch pointers, and the grid. A launch of a dialect kernel (CUDA C, which
cannot run here) fails the test.
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import numpy as np

from hamr.targets.gpu.program import DeviceApi
from hamr.targets.gpu.triton import interpret


class InterpretingApi(DeviceApi):
    vendor = "cuda"

    def __init__(self, variant: dict, driver_version: int = 13000):
        self.device = SimpleNamespace(arch="sm_90", driver_version=driver_version)
        self.memory: dict[int, np.ndarray] = {}
        self.images = {}
        for kernel in (variant.get("triton") or {}).get("kernels", []):
            for name, data in variant["files"].items():
                if name.startswith(kernel["name"] + "."):
                    self.images[bytes(data)] = kernel
        self.launched: list[tuple[str, tuple, tuple, int]] = []

    def alloc(self, nbytes: int) -> int:
        buf = np.zeros(nbytes + 64, dtype=np.uint8)
        pointer = buf.ctypes.data + (-buf.ctypes.data) % 64
        self.memory[pointer] = buf
        return pointer

    def free(self, pointer: int) -> None:
        self.memory.pop(pointer, None)

    def upload(self, pointer: int, array: np.ndarray) -> None:
        ctypes.memmove(pointer, array.ctypes.data, array.nbytes)

    def download(self, array: np.ndarray, pointer: int) -> None:
        ctypes.memmove(array.ctypes.data, pointer, array.nbytes)

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        ctypes.memmove(dst, src, nbytes)

    def load_module(self, image: bytes):
        return self.images.get(bytes(image), "dialect")

    def function(self, module, name: str):
        return (module, name)

    def allow_shared(self, function, nbytes: int) -> None:
        pass

    def launch(self, function, grid, block, shared, args) -> None:
        module, name = function
        assert module != "dialect", f"dialect kernel {name} launched: it cannot run here"
        self.launched.append((module["name"], tuple(grid), tuple(block), shared))
        interpret.launch(module, grid, args)

    def record(self):
        return None

    def elapsed_ms(self, start, end) -> float:
        return 0.0

    def synchronize(self) -> None:
        pass
