"""Executes planned segments through the compiled shared object: one C call per segment."""

from __future__ import annotations

import ctypes

import numpy as np
import onnx_ir as ir

from hamr.profiling import Profile
from hamr.targets.native.assemble import Lowered
from hamr.targets.native.ops.packing import reads_of_packed
from hamr.targets.native.plan import SegmentPlan
from hamr.targets.native.program import NativeProgram
from hamr.targets.native.weights import DroppedWeight, unread_weights


def address(array: np.ndarray) -> int:
    """The data pointer of a C-contiguous array; a few times cheaper than `array.ctypes.data` when writable."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError):  # read-only or empty
        return array.ctypes.data


class CpuPlan:
    def __init__(self, plan: SegmentPlan, entry, profiled_entry, weights: dict[str, np.ndarray], device: str):
        self.plan = plan
        self.entry = entry
        self.profiled_entry = profiled_entry
        self.device = device
        self.arena = np.empty(plan.arena_bytes + 64, dtype=np.uint8)
        base = self.arena.ctypes.data
        base += (-base) % 64
        self.pointers = (ctypes.c_void_p * max(len(plan.slots), 1))()
        self.keep = []
        self.inputs: list[tuple[int, str, np.dtype]] = []
        self.outputs: list[tuple[int, str, tuple, np.dtype]] = []
        for i, slot in enumerate(plan.slots):
            if slot.kind == "weight":
                weight = weights[slot.name]
                self.pointers[i] = None if isinstance(weight, DroppedWeight) else weight.ctypes.data
            elif slot.kind == "const":
                value = np.ascontiguousarray(plan.ctx.values[slot.name], dtype=slot.dtype)
                self.keep.append(value)
                self.pointers[i] = value.ctypes.data
            elif slot.kind == "arena":
                self.pointers[i] = base + slot.offset
            elif slot.kind == "input":
                self.inputs.append((i, slot.name, np.dtype(slot.dtype)))
            else:
                self.outputs.append((i, slot.name, slot.shape, np.dtype(slot.dtype)))
        self.params = plan.params
        self.params_ptr = plan.params.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))

    def run(self, env: dict, profile: Profile | None = None) -> None:
        pointers = self.pointers
        held = []
        for i, name, dtype in self.inputs:
            array = env[name]
            if not (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.dtype == dtype):
                array = np.ascontiguousarray(array, dtype=dtype)
                held.append(array)
            pointers[i] = address(array)
        for i, name, shape, dtype in self.outputs:
            array = np.empty(shape, dtype=dtype)
            env[name] = array
            pointers[i] = address(array)
        if profile is None:
            self.entry(pointers, self.params_ptr)
        else:
            self._run_profiled(profile)
        for name in self.plan.host_outputs:
            env[name] = np.array(self.plan.ctx.values[name])

    def _run_profiled(self, profile: Profile) -> None:
        launches = self.plan.segment.launches
        stamps = (ctypes.c_double * (len(launches) + 1))()
        self.profiled_entry(self.pointers, self.params_ptr, stamps)
        for j, launch in enumerate(launches):
            profile.add(
                launch.name, "kernel", stamps[j], stamps[j + 1] - stamps[j], "cpu", self.device, launch.kernel.label
            )


class CpuProgram(NativeProgram):
    target = "cpu"

    def __init__(
        self, model: ir.Model, lowered: Lowered, library: ctypes.CDLL, device: str = "cpu", micro_kernel: bool = False
    ):
        """`micro_kernel`: the library has the AVX-512 GEMM, which reads packed weights in place of their sources."""
        unread = unread_weights(lowered, lambda derived, node: reads_of_packed(derived, node, micro_kernel))
        super().__init__(model, lowered, device, unread)
        self.library = library
        self.weights = {
            k: v if isinstance(v, DroppedWeight) or v.flags.c_contiguous else v.copy(order="C")
            for k, v in self.weights.items()
        }
        self.entries = {}
        for segment in lowered.all_segments:
            entry = getattr(library, f"hamr_seg{segment.index}")
            entry.restype = None
            entry.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
            profiled = getattr(library, f"hamr_seg{segment.index}_prof")
            profiled.restype = None
            profiled.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double)]
            self.entries[segment.index] = (entry, profiled)

    def prepare(self, plan: SegmentPlan) -> CpuPlan:
        entry, profiled = self.entries[plan.segment.index]
        return CpuPlan(plan, entry, profiled, self.weights, self.device)

    def execute(self, executor: CpuPlan, env: dict, profile: Profile | None = None) -> None:
        executor.run(env, profile)
