"""The HIP module API through ctypes over libamdhip64 (no torch, no ROCm Python): memory, modules, launches, events.

A GPU's architecture and compute units come from the kernel driver's topology (/sys/class/kfd:
gfx_target_version, simd_count / simd_per_cu), the same place AMD SMI reads them, not from HIP's
device-properties struct or attribute numbers, whose layouts change between releases.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hamr.errors import HamrError
from hamr.targets.gpu.program import DeviceApi, argument_values

LIBRARIES = ("libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5")
TOPOLOGY = Path("/sys/class/kfd/kfd/topology/nodes")


@dataclass(frozen=True)
class HipDevice:
    index: int
    name: str
    arch: str
    memory_total: int
    multiprocessors: int
    driver_version: int


def library():
    for name in LIBRARIES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise HamrError("rocm: no AMD GPU runtime on this host (libamdhip64.so not found)")


class Hip:
    """libamdhip64, initialised: calls raise one HamrError line on an error code."""

    def __init__(self, lib=None):
        self.lib = lib if lib is not None else library()
        self.call("hipInit", 0)

    def call(self, name: str, *args) -> None:
        err = getattr(self.lib, name)(*args)
        if err != 0:
            self.lib.hipGetErrorName.restype = ctypes.c_char_p
            label = self.lib.hipGetErrorName(err)
            raise HamrError(f"rocm: {name} failed: {label.decode() if label else err}")

    def devices(self) -> list[HipDevice]:
        count, version = ctypes.c_int(), ctypes.c_int()
        self.call("hipGetDeviceCount", ctypes.byref(count))
        self.call("hipDriverGetVersion", ctypes.byref(version))
        nodes = gpu_nodes()
        found = []
        for index in range(count.value):
            name = ctypes.create_string_buffer(256)
            total = ctypes.c_size_t()
            self.call("hipDeviceGetName", name, 256, index)
            self.call("hipDeviceTotalMem", ctypes.byref(total), index)
            arch, units = nodes[index] if index < len(nodes) else ("unknown", 0)
            found.append(
                HipDevice(
                    index=index,
                    name=name.value.decode(errors="replace"),
                    arch=arch,
                    memory_total=total.value,
                    multiprocessors=units,
                    driver_version=version.value,
                )
            )
        return found


def gpu_nodes(topology: Path | None = None) -> list[tuple[str, int]]:
    """(gfx name, compute units) of each GPU node of the kernel driver's topology, in node order (HIP's order)."""
    topology = topology if topology is not None else TOPOLOGY
    nodes = []
    for node in sorted(topology.glob("*"), key=lambda p: int(p.name) if p.name.isdigit() else -1):
        try:
            lines = (node / "properties").read_text().splitlines()
        except OSError:
            continue
        fields = {k: int(v) for k, v in (line.split(None, 1) for line in lines if " " in line) if v.strip().isdigit()}
        version = fields.get("gfx_target_version", 0)
        if version:  # CPU nodes have none
            major, minor, stepping = version // 10000, version // 100 % 100, version % 100
            units = fields.get("simd_count", 0) // max(fields.get("simd_per_cu", 1), 1)
            nodes.append((f"gfx{major}{minor:x}{stepping:x}", units))
    return nodes


def gpu_archs(topology: Path | None = None) -> list[str]:
    return [arch for arch, _ in gpu_nodes(topology)]


def devices() -> list[HipDevice]:
    try:
        return Hip().devices()
    except HamrError:
        return []


class HipApi(DeviceApi):
    vendor = "rocm"
    default_shared_limit = 64 * 1024  # LDS per workgroup on gfx90a, gfx942 and gfx1100, no opt-in

    def __init__(self, index: int, lib=None):
        self.hip = Hip(lib)
        found = self.hip.devices()
        if not 0 <= index < len(found):
            raise HamrError(f"rocm:{index} is not present (this host has {len(found)} AMD GPU(s))")
        self.device, self.index = found[index], index
        self.activate()
        stream = ctypes.c_void_p()
        self.hip.call("hipStreamCreate", ctypes.byref(stream))
        self.stream = stream

    def activate(self) -> None:
        self.hip.call("hipSetDevice", self.index)

    def alloc(self, nbytes: int) -> int:
        pointer = ctypes.c_void_p()
        self.hip.call("hipMalloc", ctypes.byref(pointer), ctypes.c_size_t(nbytes))
        return int(pointer.value or 0)

    def free(self, pointer: int) -> None:
        self.hip.call("hipFree", ctypes.c_void_p(pointer))

    def upload(self, pointer: int, array: np.ndarray) -> None:
        self.hip.call("hipMemcpyHtoD", ctypes.c_void_p(pointer), ctypes.c_void_p(array.ctypes.data), array.nbytes)

    def download(self, array: np.ndarray, pointer: int) -> None:
        self.synchronize()
        self.hip.call("hipMemcpyDtoH", ctypes.c_void_p(array.ctypes.data), ctypes.c_void_p(pointer), array.nbytes)

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        self.hip.call(
            "hipMemcpyDtoDAsync", ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), self.stream
        )

    def load_module(self, image: bytes):
        module = ctypes.c_void_p()
        self.hip.call("hipModuleLoadData", ctypes.byref(module), ctypes.create_string_buffer(image, len(image)))
        return module

    def function(self, module, name: str):
        function = ctypes.c_void_p()
        self.hip.call("hipModuleGetFunction", ctypes.byref(function), module, name.encode())
        return function

    def allow_shared(self, function, nbytes: int) -> None:
        raise HamrError(f"rocm: a kernel needs {nbytes} bytes of LDS; a workgroup has {self.default_shared_limit}")

    def launch(self, function, grid: tuple, block: tuple, shared: int, args: list[tuple[str, int]]) -> None:
        values = argument_values(args)
        pointers = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        g = [ctypes.c_uint(x) for x in tuple(grid) + (1,) * (3 - len(grid))]
        b = [ctypes.c_uint(x) for x in tuple(block) + (1,) * (3 - len(block))]
        self.hip.call("hipModuleLaunchKernel", function, *g, *b, ctypes.c_uint(shared), self.stream, pointers, None)

    def record(self):
        event = ctypes.c_void_p()
        self.hip.call("hipEventCreate", ctypes.byref(event))
        self.hip.call("hipEventRecord", event, self.stream)
        return event

    def elapsed_ms(self, start, end) -> float:
        ms = ctypes.c_float()
        self.hip.call("hipEventSynchronize", end)
        self.hip.call("hipEventElapsedTime", ctypes.byref(ms), start, end)
        return float(ms.value)

    def synchronize(self) -> None:
        self.hip.call("hipStreamSynchronize", self.stream)
