"""What every target provides: a capability query, a compile step, and a loader for its variant."""

from __future__ import annotations

from typing import Any, Protocol

import onnx_ir as ir


class Program(Protocol):
    """A loaded variant, ready to run on one device."""

    target: str
    device: str

    def run(self, feeds: dict[str, Any]) -> list[Any]: ...


class Target(Protocol):
    name: str
    devices: tuple[str, ...]  # device kinds this target's variants run on

    def supports(self, node: ir.Node, opset: int, functions: frozenset = frozenset()) -> bool:
        """Can this target run `node`? (GetCapability, per node; `functions` are the model's own.)"""
        ...

    def compile(self, model: ir.Model) -> dict:
        """Build this target's variant; returns the JSON-serialisable variant manifest."""
        ...

    def load(self, model: ir.Model, variant: dict, device: str) -> Program: ...
