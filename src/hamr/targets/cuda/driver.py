"""The CUDA driver API through cuda-bindings (no torch, no toolkit): devices, memory, modules, launches, events.

`import cuda.bindings.driver` works on a machine without the NVIDIA driver; the first call then raises
(a RuntimeError: libcuda.so.1 cannot be found), which becomes one HamrError line here.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

from hamr.errors import HamrError
from hamr.targets.cuda.nvrtc import EXTRA
from hamr.targets.gpu.program import DeviceApi, argument_values


def driver_module():
    try:
        from cuda.bindings import driver
    except ImportError:
        raise HamrError(f"the cuda target needs cuda-bindings, which is not installed: {EXTRA}") from None
    return driver


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    capability: tuple[int, int]
    memory_total: int
    multiprocessors: int
    driver_version: int  # e.g. 12090 for CUDA 12.9

    @property
    def arch(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"


class Cuda:
    """The driver, initialised once: calls return their values, or raise one HamrError line."""

    def __init__(self, driver=None):
        # cuda:N is the pool's NVIDIA device N (pool/drivers/nvidia.py), which NVML numbers by PCI bus id; the
        # driver numbers fastest first unless told, before cuInit, to number as NVML does
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        self.cu = driver if driver is not None else driver_module()
        try:
            self.call("cuInit", 0)
        except HamrError:
            raise
        except Exception as exc:  # cuda-bindings raises when it cannot find libcuda.so.1
            raise HamrError(f"cuda: no NVIDIA driver on this host ({str(exc).splitlines()[0][:160]})") from None

    def call(self, name: str, *args):
        result = getattr(self.cu, name)(*args)
        err, values = result[0], result[1:]
        if int(err) != 0:
            _, text = self.cu.cuGetErrorName(err)
            label = text.decode() if isinstance(text, bytes) else str(err)
            raise HamrError(f"cuda: {name} failed: {label}")
        return values[0] if len(values) == 1 else values or None

    def devices(self) -> list[CudaDevice]:
        attr = self.cu.CUdevice_attribute
        version = self.call("cuDriverGetVersion")
        found = []
        for index in range(self.call("cuDeviceGetCount")):
            dev = self.call("cuDeviceGet", index)
            name = self.call("cuDeviceGetName", 256, dev)
            found.append(
                CudaDevice(
                    index=index,
                    name=name.split(b"\0", 1)[0].decode(errors="replace"),
                    capability=(
                        self.call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev),
                        self.call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev),
                    ),
                    memory_total=int(self.call("cuDeviceTotalMem", dev)),
                    multiprocessors=self.call(
                        "cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev
                    ),
                    driver_version=int(version),
                )
            )
        return found


def devices() -> list[CudaDevice]:
    """The NVIDIA GPUs the driver sees; none where cuda-bindings or the driver is missing."""
    try:
        return Cuda().devices()
    except HamrError:
        return []


class CudaApi(DeviceApi):
    """One device's primary context and a stream on it."""

    vendor = "cuda"

    def __init__(self, index: int, driver=None):
        self.cuda = Cuda(driver)
        self.cu = self.cuda.cu
        found = self.cuda.devices()
        if not 0 <= index < len(found):
            raise HamrError(f"cuda:{index} is not present (this host has {len(found)} NVIDIA GPU(s))")
        self.device = found[index]
        handle = self.cuda.call("cuDeviceGet", index)
        self.context = self.cuda.call("cuDevicePrimaryCtxRetain", handle)
        self.activate()
        self.stream = self.cuda.call("cuStreamCreate", 0)

    def activate(self) -> None:
        self.cuda.call("cuCtxSetCurrent", self.context)

    def alloc(self, nbytes: int) -> int:
        return int(self.cuda.call("cuMemAlloc", nbytes))

    def free(self, pointer: int) -> None:
        self.cuda.call("cuMemFree", pointer)

    def upload(self, pointer: int, array: np.ndarray) -> None:
        self.cuda.call("cuMemcpyHtoDAsync", pointer, array.ctypes.data, array.nbytes, self.stream)
        self.synchronize()  # the host array may go as soon as this returns

    def download(self, array: np.ndarray, pointer: int) -> None:
        self.cuda.call("cuMemcpyDtoHAsync", array.ctypes.data, pointer, array.nbytes, self.stream)
        self.synchronize()

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        self.cuda.call("cuMemcpyDtoDAsync", dst, src, nbytes, self.stream)

    def load_module(self, image: bytes):
        return self.cuda.call("cuModuleLoadData", image)

    def function(self, module, name: str):
        return self.cuda.call("cuModuleGetFunction", module, name.encode())

    def allow_shared(self, function, nbytes: int) -> None:
        attribute = self.cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        self.cuda.call("cuFuncSetAttribute", function, attribute, nbytes)

    def launch(self, function, grid: tuple, block: tuple, shared: int, args: list[tuple[str, int]]) -> None:
        values = argument_values(args)
        pointers = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        grid3 = tuple(grid) + (1,) * (3 - len(grid))
        block3 = tuple(block) + (1,) * (3 - len(block))
        self.cuda.call("cuLaunchKernel", function, *grid3, *block3, shared, self.stream, ctypes.addressof(pointers), 0)

    def record(self):
        event = self.cuda.call("cuEventCreate", 0)
        self.cuda.call("cuEventRecord", event, self.stream)
        return event

    def elapsed_ms(self, start, end) -> float:
        return float(self.cuda.call("cuEventElapsedTime", start, end))

    def synchronize(self) -> None:
        self.cuda.call("cuStreamSynchronize", self.stream)
