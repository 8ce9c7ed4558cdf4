"""Portable kernels on an OpenCL device through pyopencl: buffers in, one enqueue, buffers back."""

from __future__ import annotations

import numpy as np

from hamr.errors import KernelError
from hamr.ops.kernel_source import Function, KernelSource
from hamr.targets.native.render.opencl import OpenCLRenderer
from hamr.targets.native.render.portable_preludes import SHUFFLE_SLOT_BYTES
from hamr.targets.opencl.devices import get_device


class OpenCLKernels:
    def __init__(self, source: KernelSource, device_id: str):
        import pyopencl as cl

        self.cl, self.source = cl, source
        self.context = cl.Context([get_device(device_id)])
        self.queue = cl.CommandQueue(self.context)
        try:
            self.program = cl.Program(self.context, OpenCLRenderer().portable(source)).build()
        except cl.RuntimeError as exc:
            log = next((line for line in str(exc).splitlines() if "error" in line), str(exc).splitlines()[0])
            raise KernelError(f"the OpenCL compiler refused {source.origin}: {log.strip()}") from None
        self._kernels: dict[str, object] = {}

    def launch(self, kernel: Function, grid, block, arrays: list[np.ndarray], shared_bytes: int) -> None:
        cl = self.cl
        flags = cl.mem_flags
        buffers, args = [], []
        for param, array in zip(kernel.launch_params, arrays):
            if param.kind == "buffer":
                buffer = (
                    cl.Buffer(self.context, flags.READ_WRITE | flags.COPY_HOST_PTR, hostbuf=array)
                    if array.nbytes
                    else cl.Buffer(self.context, flags.READ_WRITE, size=1)
                )
                buffers.append((buffer, array))
                args.append(buffer)
            else:
                args.append(array.reshape(1)[0])
        if kernel.local_param is not None:
            args.append(cl.LocalMemory(max(shared_bytes, 4)))
        items = int(np.prod(block))
        if self.source.shuffles(kernel.name):
            args.append(cl.LocalMemory(items * SHUFFLE_SLOT_BYTES))
        function = self._kernels.get(kernel.name)
        if function is None:
            function = self._kernels[kernel.name] = cl.Kernel(self.program, kernel.name)
        global_size = tuple(g * b for g, b in zip(grid, block))
        try:
            function(self.queue, global_size, tuple(block), *args)
            for buffer, array in buffers:
                if array.nbytes:
                    cl.enqueue_copy(self.queue, array, buffer)
            self.queue.finish()
        except cl.Error as exc:
            raise KernelError(f"kernel '{kernel.name}' on OpenCL: {str(exc).splitlines()[0]}") from None
