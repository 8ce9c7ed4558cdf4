"""The ONNX operator domain: the empty name and its alias ``ai.onnx``."""

from __future__ import annotations

ONNX_DOMAINS = frozenset({"", "ai.onnx"})


def is_onnx_domain(domain: str) -> bool:
    """Whether `domain` names onnx's default operator set ('' or 'ai.onnx')."""
    return domain in ONNX_DOMAINS
