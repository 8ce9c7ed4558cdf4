"""A stand-in for libamdhip64 (as ctypes sees it) that records every call: the rocm loader's path without a GPU.

Each function takes the ctypes arguments the loader passes (byref out-parameters, c_void_p, c_size_t...),
writes its results through them, and returns hipSuccess (0). Memory is real host memory; kernels do nothing.
"""

from __future__ import annotations

import ctypes


def _out(ref):
    """The ctypes object behind a byref() argument."""
    return ref._obj


def _int(value) -> int:
    return value.value if hasattr(value, "value") else int(value)


class FakeHip:
    def __init__(self, name: bytes = b"Fake MI300X"):
        self.name = name
        self.calls: list[tuple] = []
        self.memory: dict[int, bytearray] = {}
        self.modules: list[bytes] = []
        self.launches: list[dict] = []
        self._next = 1 << 20

    def __getattr__(self, name):
        raise AttributeError(f"the fake HIP has no {name}")

    def hipInit(self, flags):
        return 0

    def hipGetErrorName(self, err):
        return b"hipErrorFake"

    def hipGetDeviceCount(self, count):
        _out(count).value = 1
        return 0

    def hipDriverGetVersion(self, version):
        _out(version).value = 60342133
        return 0

    def hipDeviceGetName(self, buf, size, index):
        ctypes.memmove(buf, self.name + b"\0", len(self.name) + 1)
        return 0

    def hipDeviceTotalMem(self, total, index):
        _out(total).value = 192 << 30
        return 0

    def hipSetDevice(self, index):
        return 0

    def hipStreamCreate(self, stream):
        _out(stream).value = 7
        return 0

    def hipMalloc(self, pointer, nbytes):
        address = self._next
        size = _int(nbytes)
        self._next += (size + 255) // 256 * 256 + 256
        self.memory[address] = bytearray(size)
        _out(pointer).value = address
        return 0

    def hipFree(self, pointer):
        self.memory.pop(_int(pointer), None)
        return 0

    def _view(self, pointer: int, nbytes: int) -> tuple[bytearray, int]:
        for base, data in self.memory.items():
            if base <= pointer and pointer + nbytes <= base + len(data):
                return data, pointer - base
        raise AssertionError(f"{nbytes} bytes at {pointer:#x} are outside every allocation")

    def hipMemcpyHtoD(self, dst, src, nbytes):
        n = _int(nbytes)
        data, at = self._view(_int(dst), n)
        data[at : at + n] = ctypes.string_at(_int(src), n)
        self.calls.append(("hipMemcpyHtoD", _int(dst), n))
        return 0

    def hipMemcpyDtoH(self, dst, src, nbytes):
        n = _int(nbytes)
        data, at = self._view(_int(src), n)
        ctypes.memmove(_int(dst), bytes(data[at : at + n]), n)
        return 0

    def hipMemcpyDtoDAsync(self, dst, src, nbytes, stream):
        n = _int(nbytes)
        source, s = self._view(_int(src), n)
        target, t = self._view(_int(dst), n)
        target[t : t + n] = source[s : s + n]
        return 0

    def hipModuleLoadData(self, module, image):
        self.modules.append(bytes(image.raw) if hasattr(image, "raw") else bytes(image))
        _out(module).value = len(self.modules)
        return 0

    def hipModuleGetFunction(self, function, module, name):
        self.functions = getattr(self, "functions", [])
        self.functions.append(name.decode())
        _out(function).value = len(self.functions)
        return 0

    def hipModuleLaunchKernel(self, function, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        name = self.functions[_int(function) - 1]
        count = len(self.params_of[name])
        args = [ctypes.c_uint64.from_address(params[i]).value for i in range(count)]
        self.launches.append(
            {
                "function": name,
                "grid": tuple(_int(v) for v in (gx, gy, gz)),
                "block": tuple(_int(v) for v in (bx, by, bz)),
                "shared": _int(shared),
                "args": args,
            }
        )
        return 0

    def hipEventCreate(self, event):
        _out(event).value = 1
        return 0

    def hipEventRecord(self, event, stream):
        return 0

    def hipEventSynchronize(self, event):
        return 0

    def hipEventElapsedTime(self, ms, start, end):
        _out(ms).value = 0.0
        return 0

    def hipStreamSynchronize(self, stream):
        return 0
