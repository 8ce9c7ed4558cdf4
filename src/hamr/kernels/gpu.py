"""Portable kernels on NVIDIA (CUDA C through NVRTC) and AMD GPUs (HIP through clang): built per
architecture, launched through the targets' driver APIs where such a GPU is present."""

from __future__ import annotations

import numpy as np

from hamr.ops.kernel_source import Function, KernelSource
from hamr.targets.native.render.gpu import CudaRenderer, HipRenderer

SCALAR_KINDS = {"int8": "i8", "uint8": "u8", "int16": "i16", "uint16": "u16", "int32": "i32", "uint32": "u32",
                "int64": "i64", "uint64": "u64", "float32": "f32", "float64": "f64"}  # fmt: skip


def build(source: KernelSource, target: str, arch: str | None = None) -> dict[str, bytes]:
    """The code objects of `source` for `target` (cuda: cubin/PTX per arch; rocm: hsaco per arch)."""
    if target == "cuda":
        from hamr.targets.cuda import nvrtc

        text = CudaRenderer().portable(source)
        return {a: nvrtc.build(text, a) for a in ([arch] if arch else nvrtc.archs())}
    from hamr.targets.rocm import clang

    text = HipRenderer().portable(source)
    return {a: clang.build(text, a) for a in ([arch] if arch else clang.archs())}


class GpuKernels:
    def __init__(self, source: KernelSource, device_id: str):
        target, index = device_id.split(":")
        if target == "cuda":
            from hamr.targets.cuda.driver import CudaApi, devices

            self.api = CudaApi(int(index))
        else:
            from hamr.targets.rocm.hip import HipApi, devices

            self.api = HipApi(int(index))
        arch = next(d.arch for d in devices() if d.index == int(index))
        self.module = self.api.load_module(build(source, target, arch)[arch])

    def launch(self, kernel: Function, grid, block, arrays: list[np.ndarray], shared_bytes: int) -> None:
        api = self.api
        api.activate()
        pointers, args = [], []
        for param, array in zip(kernel.launch_params, arrays):
            if param.kind == "buffer":
                pointer = api.alloc(max(array.nbytes, 1))
                api.upload(pointer, array)
                pointers.append((pointer, array))
                args.append(("ptr", pointer))
            else:
                args.append((SCALAR_KINDS[array.dtype.name], array))
        function = api.function(self.module, kernel.name)
        if shared_bytes > api.default_shared_limit:
            api.allow_shared(function, shared_bytes)
        try:
            api.launch(function, grid, block, shared_bytes, args)
            for pointer, array in pointers:
                api.download(array, pointer)
        finally:
            for pointer, _ in pointers:
                api.free(pointer)
