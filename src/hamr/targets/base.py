"""What every target provides: a capability query, a compile step, and a loader for its variant."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import onnx_ir as ir


class Program(Protocol):
    """A loaded variant, ready to run on one device."""

    target: str
    device: str
    host_is_device: bool  # device values are host arrays (cpu, reference); False: they live on the device (opencl)

    def run(self, feeds: dict[str, Any], keep_on_device: frozenset = frozenset(), profile=None) -> list[Any]:
        """Outputs in signature order; those named in `keep_on_device` come back as device values."""
        ...

    def is_device_value(self, value: Any) -> bool: ...

    def to_device(self, array: Any) -> Any:
        """A copy of `array` in this program's device memory (what I/O binding and carried state hold)."""
        ...

    def to_host(self, value: Any) -> Any: ...

    def copy_device(self, value: Any) -> Any:
        """A copy of a device value of this program, in its device memory."""
        ...

    def warm(self) -> None:
        """Make the program ready to run at once (weights resident on the device)."""
        ...

    def adopt_plans(self, other: Program) -> int:
        """Reuse another program's per-shape plans (a migration); returns how many."""
        ...


class HostMemory:
    """Device-value handling for programs whose device memory is host memory."""

    host_is_device = True

    def is_device_value(self, value: Any) -> bool:
        return False

    def to_device(self, array: Any) -> Any:
        return np.array(array, copy=True, order="C") if isinstance(array, np.ndarray) else array

    def to_host(self, value: Any) -> Any:
        return value

    def copy_device(self, value: Any) -> Any:
        return value

    def warm(self) -> None:
        pass

    def adopt_plans(self, other: Any) -> int:
        return 0


class Target(Protocol):
    name: str
    devices: tuple[str, ...]  # device kinds this target's variants run on

    def available(self) -> bool:
        """Can this machine build this target's variants (a C compiler, pyopencl ...)?"""
        ...

    def supports(self, node: ir.Node, opset: int, functions: frozenset = frozenset()) -> bool:
        """Can this target run `node`? (GetCapability, per node; `functions` are the model's own.)"""
        ...

    def compile(self, model: ir.Model) -> dict:
        """Build this target's variant; returns the JSON-serialisable variant manifest."""
        ...

    def load(self, model: ir.Model, variant: dict, device: str) -> Program: ...
