"""The rocm target: the kernels as HIP, built by clang into a code object per AMD GPU architecture."""

from __future__ import annotations

import onnx_ir as ir

from hamr.targets.gpu import loader
from hamr.targets.gpu.loader import device_index
from hamr.targets.gpu.target import Builder, GpuTarget
from hamr.targets.native.render.gpu import HipRenderer
from hamr.targets.rocm import clang


class RocmTarget(GpuTarget):
    name = "rocm"
    devices = ("rocm",)
    renderer = HipRenderer()
    builder = Builder(clang)
    source_file = "kernels.hip"

    def compiler(self) -> dict:
        return {"name": "clang", "version": self.builder.version(), "options": list(clang.FLAGS)}

    def load(self, model: ir.Model, variant: dict, device: str = "rocm:0"):
        from hamr.targets.rocm.hip import HipApi

        api = HipApi(device_index(device, "rocm"))
        return loader.load(self, model, variant, device, api, api.device.arch)

    def shipped_image(self, files: dict, arch: str) -> bytes | None:
        """A code object runs only on the architecture it was built for."""
        data = files.get(clang.file_name(arch))
        return bytes(data) if data is not None else None
