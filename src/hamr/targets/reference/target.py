"""The reference target: capability, compile (a placement record) and load."""

from __future__ import annotations

import onnx_ir as ir

from hamr.ir.onnx_reference.kernels import has_kernel
from hamr.ops.definition import STANDARD_DOMAINS
from hamr.ops.registry import lookup, require_registered
from hamr.targets.reference.program import ReferenceProgram


class ReferenceTarget:
    name = "reference"
    devices = ("cpu",)

    def available(self) -> bool:
        return True  # onnx.reference runs wherever hamr does

    def supports(self, node: ir.Node, opset: int, functions: frozenset = frozenset()) -> bool:
        if (node.domain, node.op_type, node.overload) in functions:
            return True
        if node.domain not in STANDARD_DOMAINS:  # a registered custom op runs its NumPy reference
            return lookup(node.domain, node.op_type) is not None
        return has_kernel(node.domain, node.op_type, opset)

    def compile(self, model: ir.Model) -> dict:
        """The reference variant interprets the portable graph: its section is the placement."""
        return {
            "target": self.name,
            "kind": "interpreted",
            "placement": {node.name: self.name for node in model.graph},
        }

    def load(self, model: ir.Model, variant: dict, device: str = "cpu") -> ReferenceProgram:
        require_registered(model)
        return ReferenceProgram(model, device)
