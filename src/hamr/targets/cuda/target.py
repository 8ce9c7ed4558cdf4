"""The cuda target: the kernels as CUDA C, built by NVRTC into cubins per architecture and PTX for later GPUs."""

from __future__ import annotations

import onnx_ir as ir

from hamr.targets.cuda import nvrtc
from hamr.targets.gpu import loader
from hamr.targets.gpu.loader import device_index
from hamr.targets.gpu.target import Builder, GpuTarget
from hamr.targets.native.render.gpu import CudaRenderer

# The oldest Linux drivers that load what NVRTC 12.9 writes: cubins through CUDA 12's minor-version
# compatibility (any 12.x driver), PTX only on a driver as new as the PTX ISA (CUDA 12.9).
MIN_DRIVER = {"cubin": "525.60.13 (CUDA 12.0)", "ptx": "575.51.03 (CUDA 12.9)"}


class CudaTarget(GpuTarget):
    name = "cuda"
    devices = ("cuda",)
    renderer = CudaRenderer()
    builder = Builder(nvrtc)
    source_file = "kernels.cu"

    def compiler(self) -> dict:
        return {
            "name": "nvrtc",
            "version": self.builder.version(),
            "options": list(nvrtc.OPTIONS),
            "min_driver": MIN_DRIVER,
        }

    def load(self, model: ir.Model, variant: dict, device: str = "cuda:0"):
        from hamr.targets.cuda.driver import CudaApi

        api = CudaApi(device_index(device, "cuda"))
        return loader.load(self, model, variant, device, api, api.device.arch)

    def runs(self, metadata: dict, api) -> bool:
        need = metadata.get("min_cuda")
        if not need:
            return True
        major, minor = (int(x) for x in need.split("."))
        version = api.device.driver_version  # 12090: CUDA 12.9
        return (version // 1000, version % 1000 // 10) >= (major, minor)

    def shipped_image(self, files: dict, arch: str) -> bytes | None:
        """The cubin for `arch`, else one of the same major version and an older minor (which it runs), else PTX
        of an older or equal virtual architecture (which the driver compiles)."""
        major, minor = _capability(arch)
        cubins = sorted(
            (_capability(name[:-6]), name) for name in files if name.startswith("sm_") and name.endswith(".cubin")
        )
        for (m, n), name in reversed(cubins):
            if m == major and n <= minor:
                return bytes(files[name])
        ptx = sorted((_capability(name[:-4]), name) for name in files if name.endswith(".ptx"))
        for capability, name in reversed(ptx):
            if capability <= (major, minor):
                return bytes(files[name])
        return None


def _capability(arch: str) -> tuple[int, int]:
    digits = "".join(ch for ch in arch.split("_", 1)[1] if ch.isdigit())
    return int(digits[:-1]), int(digits[-1])
