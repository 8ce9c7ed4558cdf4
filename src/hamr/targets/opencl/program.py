"""Executes planned segments on an OpenCL device: buffers per plan, one enqueue per kernel.

Values that leave a segment stay on the device as `ClArray`s; they are read back only
where a fallback node, a shape key or the caller needs them on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from hamr.profiling import Profile, now
from hamr.targets.native.assemble import Lowered
from hamr.targets.native.device_value import DeviceMemory, DeviceValue
from hamr.targets.native.plan import SegmentPlan
from hamr.targets.native.program import NativeProgram
from hamr.targets.native.render.base import Renderer


@dataclass(frozen=True)
class ClArray(DeviceValue):
    """A tensor in an OpenCL buffer of one program's context."""

    buffer: object
    shape: tuple
    dtype: np.dtype
    owner: OpenCLProgram


class OpenCLPlan:
    def __init__(self, program: OpenCLProgram, plan: SegmentPlan):
        cl = program.cl
        ctx = program.context
        self.program = program
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
            global_size, local_size = program.renderer.launch_range(k, values)
            if 0 in global_size:
                continue
            kernel = cl.Kernel(program.program, launch.name)
            args = [self.params, np.int64(offset)]
            args += [buffers[segment.slot(k.arg_value(arg))] for arg in k.arg_order()]
            kernel.set_args(*args)
            self.launches.append((kernel, tuple(int(g) for g in global_size), local_size, launch))

    def run(self, env: dict, profile: Profile | None = None) -> None:
        cl = self.program.cl
        queue = self.queue
        held = []
        events = []
        host_start = now()
        for buf, name, dtype in self.inputs:
            value = env[name]
            if isinstance(value, ClArray) and value.owner is self.program and value.dtype == dtype:
                if value.nbytes:
                    events.append(
                        ("upload", name, "", cl.enqueue_copy(queue, buf, value.buffer, byte_count=value.nbytes))
                    )
                continue
            array = np.ascontiguousarray(self.program.to_host(value), dtype=dtype)
            held.append(array)
            if array.nbytes:
                events.append(("upload", name, "", cl.enqueue_copy(queue, buf, array, is_blocking=False)))
        for kernel, global_size, local_size, launch in self.launches:
            event = cl.enqueue_nd_range_kernel(queue, kernel, global_size, local_size)
            if profile is not None:
                events.append(("kernel", launch.name, launch.kernel.label, event))
        for buf, name, shape, dtype in self.outputs:
            env[name] = ClArray(buf, tuple(shape), dtype, self.program)
        if profile is not None:
            queue.finish()
            self.program.record(events, host_start, profile)
        for name in self.plan.host_outputs:
            env[name] = np.array(self.plan.ctx.values[name])


class OpenCLProgram(DeviceMemory, NativeProgram):
    target = "opencl"
    host_is_device = False
    value_type = ClArray

    def __init__(self, model: ir.Model, lowered: Lowered, source: str, device, device_id: str, renderer: Renderer):
        import pyopencl as cl

        super().__init__(model, lowered, device_id)
        self.cl = cl
        self.renderer = renderer  # launch ranges of the kernels in `source`
        self.context = cl.Context([device])
        self.queue = cl.CommandQueue(self.context, properties=cl.command_queue_properties.PROFILING_ENABLE)
        self.program = cl.Program(self.context, source).build() if lowered.all_segments else None
        self.alignment = max(64, device.mem_base_addr_align // 8)
        self._weights: dict[str, object] = {}

    def upload(self, array: np.ndarray):
        flags = self.cl.mem_flags
        if array.nbytes == 0:
            return self.cl.Buffer(self.context, flags.READ_ONLY, size=1)
        return self.cl.Buffer(self.context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=np.ascontiguousarray(array))

    def finish(self) -> None:
        self.queue.finish()

    # -- device values --

    def to_device(self, array) -> ClArray:
        if isinstance(array, ClArray):
            return array if array.owner is self else self.to_device(array.numpy())
        array = np.ascontiguousarray(array)
        flags = self.cl.mem_flags
        size = max(array.nbytes, 1)
        buf = self.cl.Buffer(self.context, flags.READ_WRITE, size=size)
        if array.nbytes:
            self.cl.enqueue_copy(self.queue, buf, array, is_blocking=True)
        return ClArray(buf, tuple(array.shape), array.dtype, self)

    def copy_device(self, value: ClArray) -> ClArray:
        buf = self.cl.Buffer(self.context, self.cl.mem_flags.READ_WRITE, size=max(value.nbytes, 1))
        if value.nbytes:
            self.cl.enqueue_copy(self.queue, buf, value.buffer, byte_count=value.nbytes)
        return ClArray(buf, value.shape, value.dtype, self)

    def to_host(self, value):
        if not isinstance(value, ClArray):
            return value
        array = np.empty(value.shape, dtype=value.dtype)
        if array.nbytes:
            value.owner.cl.enqueue_copy(value.owner.queue, array, value.buffer, is_blocking=True)
        return array

    def record(self, events: list, host_start: float, profile: Profile) -> None:
        """Device timestamps (ns) placed on the host timeline, the first command at `host_start`."""
        if not events:
            return
        starts = [event.profile.start for *_, event in events]
        base = min(starts)
        for kind, name, ops, event in events:
            start = host_start + (event.profile.start - base) * 1e-9
            duration = (event.profile.end - event.profile.start) * 1e-9
            profile.add(name, kind, start, duration, "opencl", self.device, ops)

    def prepare(self, plan: SegmentPlan) -> OpenCLPlan:
        return OpenCLPlan(self, plan)

    def execute(self, executor: OpenCLPlan, env: dict, profile: Profile | None = None) -> None:
        executor.run(env, profile)
