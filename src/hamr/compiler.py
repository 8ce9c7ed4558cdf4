"""compile: ONNX in, an Executable with one variant per target out."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from hamr.errors import ModelLoadError, UnsupportedOpError
from hamr.format.executable import Executable
from hamr.frontends import import_onnx, torch_export
from hamr.frontends.onnx_model import ModelSource
from hamr.ir.domains import is_onnx_domain
from hamr.ir.passes import optimise
from hamr.ir.signature import signature_of
from hamr.targets import get_target, target_names

log = logging.getLogger(__name__)


def default_targets() -> list[str]:
    """$HAMR_TARGETS, else every target this machine can build, in the order variants are built and preferred in."""
    from hamr.settings import settings

    chosen = settings().targets
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    return [name for name in target_names() if get_target(name).available()]


def compile_model(
    source: ModelSource | Any,
    targets: list[str] | None = None,
    *,
    example_args: tuple = (),
    dynamic_shapes: Any = None,
) -> Executable:
    """`source`: an ONNX model (path, bytes, ModelProto), a torch ``nn.Module`` traced on `example_args` with
    `dynamic_shapes` (torch.export's), a torch ``ExportedProgram``, or a ``.pt2`` file of one."""
    onnx_source = _onnx_of(source, example_args, dynamic_shapes)
    model, note = import_onnx(onnx_source)
    model, records = optimise(model)
    names = list(targets or default_targets())
    variants = {}
    for name in names:
        target = get_target(name)
        missing = unsupported_nodes(model, target)
        if missing:
            ops = sorted({op for op, _ in missing})
            where = ", ".join(f"{op} at node '{node}'" for op, node in missing[:3])
            raise UnsupportedOpError(f"unsupported op(s) for target {name}: {', '.join(ops)} ({where})", ops)
        variants[name] = target.compile(model)
        fallback = fallback_ops(variants[name])
        if fallback:
            log.warning(
                "%s: %d node(s) fall back to reference: %s", name, len(variants[name]["fallback"]), ", ".join(fallback)
            )
    return Executable(
        model=model,
        name=model.graph.name or _stem(onnx_source),
        signature=signature_of(model.graph),
        variants=variants,
        source={
            "sha256": _digest(source if _is_model_source(source) else onnx_source),
            "import": note,
            "opsets": dict(model.opset_imports),
        },
        passes=[r.to_json() for r in records],
    )


def _onnx_of(source, example_args: tuple, dynamic_shapes: Any) -> ModelSource:
    """A PyTorch model as ONNX, through the torch frontend (which imports torch); anything else as given."""
    if torch_export.is_torch_model(source):
        return torch_export.export_module(source, example_args, dynamic_shapes)
    if torch_export.is_exported_program_file(source):
        return torch_export.load_exported_program(source)
    if example_args or dynamic_shapes is not None:
        raise ModelLoadError("example_args and dynamic_shapes are for a torch.nn.Module; the model is ONNX")
    return source


def fallback_ops(variant: dict) -> list[str]:
    return sorted({entry["op"] for entry in variant.get("fallback", {}).values()})


def unsupported_nodes(model: ir.Model, target) -> list[tuple[str, str]]:
    functions = frozenset(model.functions)
    opsets = dict(model.opset_imports)
    missing = []
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        version = node.version or opsets.get(node.domain, opsets.get("", 1))
        if not target.supports(node, version, functions):
            label = node.op_type if is_onnx_domain(node.domain) else f"{node.domain}::{node.op_type}"
            missing.append((label, node.name or "?"))
    return missing


def _is_model_source(source) -> bool:
    return isinstance(source, (str, Path, bytes, onnx.ModelProto))


def _stem(source: ModelSource) -> str:
    return Path(source).stem if isinstance(source, (str, Path)) else "model"


def _digest(source: ModelSource) -> str:
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
    elif isinstance(source, bytes):
        data = source
    else:
        data = Path(source).read_bytes()
    return hashlib.sha256(data).hexdigest()
