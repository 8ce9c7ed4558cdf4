"""Spec-correct replacements for the few onnx.reference op implementations that deviate from the ONNX spec.

Each entry names the deviation; remove it once the onnx release we pin fixes it.
"""

from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun


class GlobalMaxPool(OpRun):
    """onnx 1.23 reduces axes (ndim-2, ndim-1), which is the channel axis for 3-D input; the spec reduces 2..ndim-1."""

    op_domain = ""

    def _run(self, x):
        return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)


OVERRIDES = [GlobalMaxPool]
