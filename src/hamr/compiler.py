"""compile: ONNX in, an Executable with one variant per target out."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import onnx
import onnx_ir as ir

from hamr.errors import UnsupportedOpError
from hamr.format.executable import Executable
from hamr.frontends import import_onnx
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


def compile_model(source: ModelSource, targets: list[str] | None = None) -> Executable:
    model, note = import_onnx(source)
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
        name=model.graph.name or _stem(source),
        signature=signature_of(model.graph),
        variants=variants,
        source={"sha256": _digest(source), "import": note, "opsets": dict(model.opset_imports)},
        passes=[r.to_json() for r in records],
    )


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
