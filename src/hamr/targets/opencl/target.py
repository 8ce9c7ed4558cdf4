"""The opencl target: generated OpenCL C kernels, run through pyopencl on any OpenCL device."""

from __future__ import annotations

import onnx_ir as ir

from hamr.targets.native.render.opencl import OpenCLRenderer
from hamr.targets.native.target import NativeTarget
from hamr.targets.opencl.devices import get_device, pyopencl_module
from hamr.targets.opencl.program import OpenCLProgram


class OpenCLTarget(NativeTarget):
    name = "opencl"
    devices = ("opencl",)
    renderer = OpenCLRenderer()

    def available(self) -> bool:
        return pyopencl_module() is not None

    def compile(self, model: ir.Model) -> dict:
        part, lowered = self.lower(model)
        source = self.source(lowered)
        variant = self.describe(model, part, lowered, source)
        variant["files"] = {"kernels.cl": source.encode()}
        return variant

    def load(self, model: ir.Model, variant: dict, device: str = "opencl:0") -> OpenCLProgram:
        lowered, source, _ = self.regenerated(model, variant)
        return OpenCLProgram(model, lowered, source, get_device(device), device, self.renderer)
