"""Executes planned segments on an OpenCL device: buffers per plan, one enqueue per kernel."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from hamr.targets.native.assemble import Lowered
from hamr.targets.native.plan import SegmentPlan
from hamr.targets.native.program import NativeProgram


class OpenCLPlan:
    def __init__(self, program: "OpenCLProgram", plan: SegmentPlan):
        cl = program.cl
        ctx = program.context
        self.plan = plan
        self.queue = program.queue
        flags = cl.mem_flags
        params = plan.params if plan.params.size else np.zeros(1, dtype=np.int64)
        self.params = cl.Buffer(ctx, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=params)
        self.arena = cl.Buffer(ctx, flags.READ_WRITE, size=max(plan.arena_bytes, 64))
        buffers = []
        self.inputs: list[tuple[object, str, np.dtype]] = []
        self.outputs: list[tuple[object, str, tuple, np.dtype]] = []
        for slot in plan.slots:
            size = max(slot.nbytes, 1)
            if slot.kind == "weight":
                buf = program.weight_buffer(slot.name)
            elif slot.kind == "const":
                value = np.ascontiguousarray(plan.ctx.values[slot.name], dtype=slot.dtype)
                buf = program.upload(value)
            elif slot.kind == "arena" and slot.nbytes:
                buf = self.arena.get_sub_region(slot.offset, slot.nbytes)
            else:
                buf = cl.Buffer(ctx, flags.READ_WRITE, size=size)
                if slot.kind == "input":
                    self.inputs.append((buf, slot.name, np.dtype(slot.dtype)))
                elif slot.kind == "output":
                    self.outputs.append((buf, slot.name, slot.shape, np.dtype(slot.dtype)))
            buffers.append(buf)
        self.buffers = buffers  # kernel arguments do not keep their buffers alive
        self.launches = []
        segment = plan.segment
        offsets = plan.params[: len(segment.launches)]
        for launch, values, offset in zip(segment.launches, plan.launch_params, offsets):
            k = launch.kernel
            if k.is_map:
                if values[0] == 0:
                    continue
                global_size, local_size = (int(values[0]),), None
            else:
                global_size, local_size = k.cl_range(values)
                if 0 in global_size:
                    continue
            kernel = cl.Kernel(program.program, launch.name)
            args = [self.params, np.int64(offset)]
            args += [buffers[segment.slot(k.arg_value(arg))] for arg in k.arg_order()]
            kernel.set_args(*args)
            self.launches.append((kernel, tuple(int(g) for g in global_size), local_size))

    def run(self, env: dict) -> None:
        cl_module = __import__("pyopencl")
        queue = self.queue
        held = []
        for buf, name, dtype in self.inputs:
            array = np.ascontiguousarray(env[name], dtype=dtype)
            held.append(array)
            if array.nbytes:
                cl_module.enqueue_copy(queue, buf, array, is_blocking=False)
        for kernel, global_size, local_size in self.launches:
            cl_module.enqueue_nd_range_kernel(queue, kernel, global_size, local_size)
        for buf, name, shape, dtype in self.outputs:
            array = np.empty(shape, dtype=dtype)
            if array.nbytes:
                cl_module.enqueue_copy(queue, array, buf, is_blocking=False)
            env[name] = array
        queue.finish()
        for name in self.plan.host_outputs:
            env[name] = np.array(self.plan.ctx.values[name])


class OpenCLProgram(NativeProgram):
    target = "opencl"

    def __init__(self, model: ir.Model, lowered: Lowered, source: str, device, device_id: str):
        import pyopencl as cl

        super().__init__(model, lowered, device_id)
        self.cl = cl
        self.context = cl.Context([device])
        self.queue = cl.CommandQueue(self.context)
        self.program = cl.Program(self.context, source).build() if lowered.segments else None
        self.alignment = max(64, device.mem_base_addr_align // 8)
        self._weights: dict[str, object] = {}

    def upload(self, array: np.ndarray):
        flags = self.cl.mem_flags
        if array.nbytes == 0:
            return self.cl.Buffer(self.context, flags.READ_ONLY, size=1)
        return self.cl.Buffer(self.context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=np.array(array, order="C"))

    def weight_buffer(self, name: str):
        if name not in self._weights:
            self._weights[name] = self.upload(self.weights[name])
        return self._weights[name]

    def prepare(self, plan: SegmentPlan) -> OpenCLPlan:
        return OpenCLPlan(self, plan)

    def execute(self, executor: OpenCLPlan, env: dict) -> None:
        executor.run(env)
