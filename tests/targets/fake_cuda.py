"""A stand-in for cuda.bindings.driver that records every call: the loader's path without a GPU.

Memory is real host memory (copies in and out work); kernels do nothing. Each call answers as
cuda-bindings does, a tuple of the CUresult (0: success) and the values.
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace


class FakeCudaDriver:
    CUdevice_attribute = SimpleNamespace(
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76,
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT=16,
    )
    CUfunction_attribute = SimpleNamespace(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES=8)

    def __init__(self, capability=(9, 0), name=b"Fake H200", driver_version=12090):
        self.capability, self.name, self.driver_version = capability, name, driver_version
        self.calls: list[tuple] = []
        self.memory: dict[int, bytearray] = {}
        self.modules: list[bytes] = []
        self.launches: list[dict] = []
        self._next = 1 << 20
        self._expected_params: dict[str, list] = {}

    def _log(self, *call):
        self.calls.append(call)

    def cuInit(self, flags):
        self._log("cuInit", flags)
        return (0,)

    def cuGetErrorName(self, err):
        return (0, b"CUDA_ERROR_FAKE")

    def cuDriverGetVersion(self):
        return (0, self.driver_version)

    def cuDeviceGetCount(self):
        return (0, 1)

    def cuDeviceGet(self, index):
        return (0, index)

    def cuDeviceGetName(self, size, dev):
        return (0, self.name + b"\0")

    def cuDeviceGetAttribute(self, attr, dev):
        values = {75: self.capability[0], 76: self.capability[1], 16: 132}
        return (0, values[attr])

    def cuDeviceTotalMem(self, dev):
        return (0, 141 << 30)

    def cuDevicePrimaryCtxRetain(self, dev):
        return (0, "ctx")

    def cuCtxSetCurrent(self, ctx):
        return (0,)

    def cuStreamCreate(self, flags):
        return (0, "stream")

    def cuMemAlloc(self, nbytes):
        pointer = self._next
        self._next += (nbytes + 255) // 256 * 256 + 256
        self.memory[pointer] = bytearray(nbytes)
        self._log("cuMemAlloc", pointer, nbytes)
        return (0, pointer)

    def cuMemFree(self, pointer):
        self.memory.pop(pointer, None)
        return (0,)

    def _view(self, pointer, nbytes) -> tuple[bytearray, int]:
        for base, data in self.memory.items():
            if base <= pointer and pointer + nbytes <= base + len(data):
                return data, pointer - base
        raise AssertionError(f"{nbytes} bytes at {pointer:#x} are outside every allocation")

    def cuMemcpyHtoDAsync(self, dst, src, nbytes, stream):
        data, at = self._view(dst, nbytes)
        data[at : at + nbytes] = ctypes.string_at(src, nbytes)
        self._log("cuMemcpyHtoDAsync", dst, nbytes)
        return (0,)

    def cuMemcpyDtoHAsync(self, dst, src, nbytes, stream):
        data, at = self._view(src, nbytes)
        ctypes.memmove(dst, bytes(data[at : at + nbytes]), nbytes)
        return (0,)

    def cuMemcpyDtoDAsync(self, dst, src, nbytes, stream):
        source, s = self._view(src, nbytes)
        target, t = self._view(dst, nbytes)
        target[t : t + nbytes] = source[s : s + nbytes]
        return (0,)

    def cuModuleLoadData(self, image):
        self.modules.append(bytes(image))
        return (0, f"module{len(self.modules)}")

    def cuModuleGetFunction(self, module, name):
        self._log("cuModuleGetFunction", name.decode())
        return (0, name.decode())

    def cuFuncSetAttribute(self, function, attribute, value):
        self._log("cuFuncSetAttribute", function, attribute, value)
        return (0,)

    def cuLaunchKernel(self, function, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        count = len(self._expected_params.get(function, ())) or 0
        pointers = (ctypes.c_void_p * count).from_address(params)
        args = [ctypes.c_uint64.from_address(p).value for p in pointers]
        self.launches.append(
            {"function": function, "grid": (gx, gy, gz), "block": (bx, by, bz), "shared": shared, "args": args}
        )
        return (0,)

    def cuEventCreate(self, flags):
        return (0, object())

    def cuEventRecord(self, event, stream):
        return (0,)

    def cuEventElapsedTime(self, start, end):
        return (0, 0.0)

    def cuStreamSynchronize(self, stream):
        return (0,)

    def expect(self, launches: list[dict]) -> None:
        """The variant's launch metadata: how many parameters each function takes (to read its arguments back)."""
        self._expected_params = {entry["name"]: entry["params"] for entry in launches}

    def expect_triton(self, triton: dict | None) -> None:
        """The variant's Triton kernels: their own parameters, then the two scratch pointers."""
        for kernel in (triton or {}).get("kernels", []):
            runtime = [name for name, kind in kernel["signature"].items() if kind != "constexpr"]
            self._expected_params[next(iter(kernel["archs"].values()))["function"]] = [*runtime, "scratch", "scratch"]
