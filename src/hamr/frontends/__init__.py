"""Frontends bring models in from other formats and hand back ONNX at the canonical opset."""

from hamr.frontends.onnx_model import CANONICAL_OPSET, import_onnx, read_onnx

__all__ = ["CANONICAL_OPSET", "import_onnx", "read_onnx"]
