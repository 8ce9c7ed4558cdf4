"""Spec-correct replacements for the few onnx.reference op implementations that deviate from the ONNX spec.

Each entry names the deviation; remove it once the onnx release we pin fixes it.
`reference_ops` adds the registered custom ops a model uses (`custom.py`): every
ReferenceEvaluator hamr builds takes its `new_ops` from there.
"""

from __future__ import annotations

import onnx
from onnx.reference.op_run import OpRun

from hamr.ir.onnx_reference.custom import custom_op_runs


class GlobalMaxPool(OpRun):
    """onnx 1.23 reduces axes (ndim-2, ndim-1), which is the channel axis for 3-D input; the spec reduces 2..ndim-1."""

    op_domain = ""

    def _run(self, x):
        return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)


OVERRIDES = [GlobalMaxPool]


def reference_ops(model: onnx.ModelProto) -> list[type[OpRun]]:
    """`new_ops` for a ReferenceEvaluator of `model`: the spec fixes, plus the registered custom ops it uses."""
    return OVERRIDES + custom_op_runs(model)
