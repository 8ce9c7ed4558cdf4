"""The input/output signature of a graph, with symbolic dimensions kept symbolic."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx_ir as ir

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    name: str
    kind: str  # "tensor", or the onnx type text for sequences, optionals and maps
    dtype: str | None = None  # numpy name, e.g. "float32"; None when not a tensor
    shape: list[Dim] | None = None  # None: rank unknown

    def describe(self) -> str:
        if self.kind != "tensor":
            return self.kind
        dims = "?" if self.shape is None else ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


@dataclass(frozen=True)
class Signature:
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"inputs": [asdict(s) for s in self.inputs], "outputs": [asdict(s) for s in self.outputs]}

    @classmethod
    def from_json(cls, data: dict) -> Signature:
        return cls(
            inputs=[TensorSpec(**s) for s in data["inputs"]],
            outputs=[TensorSpec(**s) for s in data["outputs"]],
        )


@functools.lru_cache(maxsize=64)  # np.dtype(...).name costs ~20 us; lowering asks it thousands of times
def numpy_dtype_name(dtype: ir.DataType) -> str:
    if dtype == ir.DataType.STRING:
        return "str"
    return np.dtype(dtype.numpy()).name


def spec_of(value: ir.Value) -> TensorSpec:
    vtype = value.type
    if vtype is None or isinstance(vtype, ir.TensorType):
        dtype = value.dtype
        shape = None
        if value.shape is not None:
            shape = [_dim(d) for d in value.shape]
        return TensorSpec(value.name, "tensor", numpy_dtype_name(dtype) if dtype is not None else None, shape)
    return TensorSpec(value.name, str(vtype))


def _dim(d) -> Dim:
    if isinstance(d, int):
        return d
    return d.value  # SymbolicDim: a name, or None when unknown


def signature_of(graph: ir.Graph) -> Signature:
    return Signature(
        inputs=[spec_of(v) for v in graph.inputs if not v.is_initializer()],
        outputs=[spec_of(v) for v in graph.outputs],
    )
