"""Planned segments on a GPU through a vendor's driver API (cuda: the CUDA driver; rocm: HIP).

One device allocation per plan holds its arena; weights are uploaded once per program. Kernels run
in order on the program's stream; values that leave a segment stay on the device as `GpuArray`s.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from hamr.profiling import Profile, now
from hamr.targets.native.assemble import Lowered
from hamr.targets.native.device_value import DeviceMemory, DeviceValue
from hamr.targets.native.plan import SegmentPlan
from hamr.targets.native.program import NativeProgram
from hamr.targets.native.render.gpu import GpuRenderer

SCRATCH = ("global_scratch", "profile_scratch")  # the two pointers after a Triton kernel's own arguments


ARGUMENT_TYPES = {
    "ptr": ctypes.c_uint64, "i64": ctypes.c_int64, "u64": ctypes.c_uint64, "i32": ctypes.c_int32, "u32": ctypes.c_uint32,
    "i16": ctypes.c_int16, "u16": ctypes.c_uint16, "i8": ctypes.c_int8, "u8": ctypes.c_uint8, "f32": ctypes.c_float,
    "f64": ctypes.c_double,
}  # fmt: skip


def argument_values(args: list[tuple[str, object]]) -> list:
    """A launch's arguments as ctypes values, by kind: ("ptr", address), ("i64", n), ("f32", x)..."""
    return [ARGUMENT_TYPES[kind](value.item() if hasattr(value, "item") else value) for kind, value in args]


class DeviceApi:
    """What a GPU program asks of a driver. Pointers are ints; calls queue on one stream."""

    vendor = ""  # the target that loads through it (cuda, rocm)
    default_shared_limit = 48 * 1024  # dynamic shared memory a kernel gets without opting in

    def alloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, pointer: int) -> None:
        raise NotImplementedError

    def upload(self, pointer: int, array: np.ndarray) -> None:
        raise NotImplementedError

    def download(self, array: np.ndarray, pointer: int) -> None:
        """Copies into `array` and waits for it."""
        raise NotImplementedError

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        raise NotImplementedError

    def load_module(self, image: bytes):
        raise NotImplementedError

    def function(self, module, name: str):
        raise NotImplementedError

    def allow_shared(self, function, nbytes: int) -> None:
        """Opt `function` in to `nbytes` of dynamic shared memory, above default_shared_limit."""
        raise NotImplementedError

    def launch(self, function, grid: tuple, block: tuple, shared: int, args: list[tuple[str, int]]) -> None:
        """`args`: (kind, value) in the kernel's parameter order, kinds as ARGUMENT_TYPES names them."""
        raise NotImplementedError

    def record(self):
        """An event recorded on the stream now."""
        raise NotImplementedError

    def elapsed_ms(self, start, end) -> float:
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError


class DeviceBuffer:
    """One device allocation, freed when nothing refers to it."""

    def __init__(self, api: DeviceApi, nbytes: int):
        self.api, self.nbytes = api, nbytes
        self.pointer = api.alloc(max(nbytes, 1))

    def __del__(self):
        try:
            self.api.free(self.pointer)
        except Exception:  # the driver may be gone at interpreter exit
            pass


@dataclass(frozen=True)
class GpuArray(DeviceValue):
    """A tensor in device memory of one program."""

    buffer: DeviceBuffer | None  # None: a view into a plan's arena, kept alive by `owner`
    pointer: int
    shape: tuple
    dtype: np.dtype
    owner: GpuProgram


class GpuPlan:
    def __init__(self, program: GpuProgram, plan: SegmentPlan):
        api = program.api
        self.program, self.plan = program, plan
        params = plan.params if plan.params.size else np.zeros(1, dtype=np.int64)
        self.params = program.upload(params)
        self.arena = DeviceBuffer(api, plan.arena_bytes)
        self.held = [self.params, self.arena]
        pointers = []
        self.inputs: list[tuple[int, str, np.dtype]] = []
        self.outputs: list[tuple[DeviceBuffer, str, tuple, np.dtype]] = []
        for slot in plan.slots:
            if slot.kind == "weight":
                buf = program.weight_buffer(slot.name)
            elif slot.kind == "const":
                buf = program.upload(np.ascontiguousarray(plan.ctx.values[slot.name], dtype=slot.dtype))
            elif slot.kind == "arena" and slot.nbytes:
                pointers.append(self.arena.pointer + slot.offset)
                continue
            else:
                buf = DeviceBuffer(api, slot.nbytes)
                if slot.kind == "input":
                    self.inputs.append((buf.pointer, slot.name, np.dtype(slot.dtype)))
                elif slot.kind == "output":
                    self.outputs.append((buf, slot.name, slot.shape, np.dtype(slot.dtype)))
            self.held.append(buf)
            pointers.append(buf.pointer)
        segment = plan.segment
        self.launches = []
        for launch, values, offset in zip(segment.launches, plan.launch_params, plan.params[: len(segment.launches)]):
            k = launch.kernel
            args = [("ptr", self.params.pointer), ("i64", int(offset))]
            args += [("ptr", pointers[segment.slot(k.arg_value(arg))]) for arg in k.arg_order()]
            triton = program.triton.get(launch.name)
            if triton is not None:
                grid, block, shared = triton.grid(values), tuple(triton.metadata["block"]), 0
                shared = triton.metadata["dynamic_shared_bytes"]
                args += [("ptr", self._scratch(triton.metadata[kind], grid)) for kind in SCRATCH]
                function = triton.function
            else:
                (grid, block), shared = program.renderer.launch_grid(k, values), 0
                function = program.function_of(launch.name)
            if 0 in grid:
                continue
            self.launches.append((function, grid, block, shared, args, launch))

    def _scratch(self, need: dict, grid: tuple) -> int:
        """A Triton launch's scratch: `size` bytes per block, or NULL where it needs none."""
        if not need["size"]:
            return 0
        align = max(need["align"], 1)
        buf = DeviceBuffer(self.program.api, math.prod(grid) * -(-need["size"] // align) * align)
        self.held.append(buf)
        return buf.pointer

    def run(self, env: dict, profile: Profile | None = None) -> None:
        program, api = self.program, self.program.api
        program.activate()
        host_start = now()
        marks = []
        for pointer, name, dtype in self.inputs:
            value = env[name]
            if isinstance(value, GpuArray) and value.owner is program and value.dtype == dtype:
                if value.nbytes:
                    api.copy(pointer, value.pointer, value.nbytes)
                continue
            array = np.ascontiguousarray(program.to_host(value), dtype=dtype)
            if array.nbytes:
                api.upload(pointer, array)
        for function, grid, block, shared, args, launch in self.launches:
            start = api.record() if profile is not None else None
            api.launch(function, grid, block, shared, args)
            if profile is not None:
                marks.append((launch, start, api.record()))
        for buf, name, shape, dtype in self.outputs:
            env[name] = GpuArray(buf, buf.pointer, tuple(shape), dtype, program)
        if profile is not None:
            api.synchronize()
            program.record(marks, host_start, profile)
        for name in self.plan.host_outputs:
            env[name] = np.array(self.plan.ctx.values[name])


class GpuProgram(DeviceMemory, NativeProgram):
    host_is_device = False
    value_type = GpuArray

    def __init__(
        self,
        model: ir.Model,
        lowered: Lowered,
        api: DeviceApi,
        module,
        functions: dict[str, str],
        device_id: str,
        renderer: GpuRenderer,
        triton: dict | None = None,
    ):
        """`functions`: launch name -> the kernel function in `module` it runs; `triton`: launch name -> the
        Triton kernel (variant.TritonFunction) that runs it instead."""
        super().__init__(model, lowered, device_id)
        self.triton = triton or {}
        self.target = api.vendor
        self.api, self.module, self.renderer = api, module, renderer
        self._names = functions
        self._functions: dict[str, object] = {}
        self._weights: dict[str, DeviceBuffer] = {}

    def activate(self) -> None:
        """Make this program's context current on the calling thread (a driver context is per thread)."""
        activate = getattr(self.api, "activate", None)
        if activate is not None:
            activate()

    def function_of(self, launch_name: str):
        name = self._names[launch_name]
        if name not in self._functions:
            self._functions[name] = self.api.function(self.module, name)
        return self._functions[name]

    def upload(self, array: np.ndarray) -> DeviceBuffer:
        self.activate()
        buf = DeviceBuffer(self.api, array.nbytes)
        if array.nbytes:
            self.api.upload(buf.pointer, np.ascontiguousarray(array))
        return buf

    def finish(self) -> None:
        self.api.synchronize()

    # -- device values --

    def to_device(self, array) -> GpuArray:
        if isinstance(array, GpuArray):
            return array if array.owner is self else self.to_device(array.numpy())
        array = np.ascontiguousarray(array)
        buf = self.upload(array)
        return GpuArray(buf, buf.pointer, tuple(array.shape), array.dtype, self)

    def copy_device(self, value: GpuArray) -> GpuArray:
        self.activate()
        buf = DeviceBuffer(self.api, value.nbytes)
        if value.nbytes:
            self.api.copy(buf.pointer, value.pointer, value.nbytes)
        return GpuArray(buf, buf.pointer, value.shape, value.dtype, self)

    def to_host(self, value):
        if not isinstance(value, GpuArray):
            return value
        array = np.empty(value.shape, dtype=value.dtype)
        if array.nbytes:
            value.owner.activate()
            value.owner.api.download(array, value.pointer)
        return array

    def record(self, marks: list, host_start: float, profile: Profile) -> None:
        """Kernel times from the events around each launch, placed on the host timeline from `host_start`."""
        if not marks:
            return
        first = marks[0][1]
        for launch, start, end in marks:
            offset = self.api.elapsed_ms(first, start) * 1e-3
            duration = self.api.elapsed_ms(start, end) * 1e-3
            label = launch.kernel.label + (" (triton)" if launch.name in self.triton else "")
            profile.add(launch.name, "kernel", host_start + offset, duration, self.target, self.device, label)

    def prepare(self, plan: SegmentPlan) -> GpuPlan:
        return GpuPlan(self, plan)

    def execute(self, executor: GpuPlan, env: dict, profile: Profile | None = None) -> None:
        executor.run(env, profile)
