"""The ONNX frontend: read, validate and normalise a model to the canonical opset."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError
from onnx import defs, version_converter

from hamr.errors import ModelLoadError, first_line
from hamr.format.external import all_tensors, is_external, location
from hamr.frontends.checker import check_model
from hamr.frontends.dims import free_dims
from hamr.ir.domains import is_onnx_domain
from hamr.ops.definition import STANDARD_DOMAINS
from hamr.ops.registry import lookup

log = logging.getLogger(__name__)

#: Every model is converted up to this opset on import, so that targets implement
#: one version of each op. It is the newest opset the installed onnx package knows.
CANONICAL_OPSET = defs.onnx_opset_version()

ModelSource = str | Path | bytes | onnx.ModelProto


def read_onnx(source: ModelSource) -> onnx.ModelProto:
    """Read a model from a path, bytes or a ModelProto, and check it is well formed."""
    if isinstance(source, onnx.ModelProto):
        model, label = source, "model"
    elif isinstance(source, bytes):
        model, label = _parse(source, "model bytes"), "model bytes"
    else:
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        model = _parse(path.read_bytes(), label)
        if _external_tensors(model):
            _load_external_data(model, path.parent, label)
    external = _external_tensors(model)
    if external:
        where = (
            "a model given as bytes or a ModelProto has no directory"
            if not isinstance(source, (str, Path))
            else "onnx does not load external data of this kind of tensor"
        )
        raise ModelLoadError(
            f"{label}: tensor {external[0].name!r} takes its data from "
            f"{location(external[0])!r}; refused: {where} (save the model with its data inside)"
        )
    if not model.HasField("graph"):
        raise ModelLoadError(f"{label} is not a valid ONNX model: it has no graph")
    _check_opset(model, label)
    try:
        check_model(model)
    except onnx.checker.ValidationError as exc:
        first = first_line(exc, with_type=False)
        raise ModelLoadError(f"{label} is not a valid ONNX model: {first}") from exc
    return model


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{label} is not a valid ONNX model: cannot parse protobuf ({exc})") from exc
    if not data or not model.HasField("graph"):
        raise ModelLoadError(f"{label} is not a valid ONNX model: no graph in the file")
    return model


def _external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [tensor for tensor, _ in all_tensors(model) if is_external(tensor)]


def _load_external_data(model: onnx.ModelProto, directory: Path, label: str) -> None:
    """Read external data from files under `directory` only: onnx's loader refuses absolute
    locations, `..` and symbolic links (in the file or a directory on the way) that lead outside."""
    try:
        onnx.load_external_data_for_model(model, str(directory))
    except (onnx.checker.ValidationError, OSError, ValueError) as exc:
        first = first_line(exc, with_type=False)
        raise ModelLoadError(f"{label}: cannot read its external data: {first}") from exc


def default_opset(model: onnx.ModelProto) -> int | None:
    versions = [o.version for o in model.opset_import if is_onnx_domain(o.domain)]
    return max(versions) if versions else None


def _check_opset(model: onnx.ModelProto, label: str) -> None:
    version = default_opset(model)
    if version is not None and version > CANONICAL_OPSET:
        raise ModelLoadError(
            f"{label} uses ONNX opset {version}; this installation knows opsets up to "
            f"{CANONICAL_OPSET} (upgrade the onnx package)"
        )


def normalise_opset(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Convert to CANONICAL_OPSET; keep the original when the converter cannot.

    Returns the model and a one-line note of what happened.
    """
    version = default_opset(model)
    if version is None:
        return model, "no default-domain opset"
    if version >= CANONICAL_OPSET:
        return model, f"opset {version} kept"
    try:
        converted = version_converter.convert_version(_with_custom_types(model), CANONICAL_OPSET)
    except Exception as exc:  # the converter raises bare RuntimeErrors and asserts
        note = f"opset {version} kept: converter refused ({first_line(exc, with_type=False)[:120]})"
        log.info(note)
        return model, note
    if model.functions and not converted.functions:
        # the converter drops model-local functions; their bodies keep their own opset imports
        converted.functions.extend(model.functions)
    return converted, f"opset {version} -> {CANONICAL_OPSET}"


def _with_custom_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with value infos for its custom ops' outputs, from their shape functions.

    onnx.checker and onnx.version_converter accept nodes of a domain they do not know (the
    model must import the domain), but the converter's adapters then see untyped values
    downstream: Softmax-12 -> 13 becomes a Shape/Flatten/Softmax/Reshape chain instead of
    one Softmax. Models without registered custom ops pass through untouched.
    """
    from onnx_ir.passes.common import ShapeInferencePass

    from hamr.ir.passes.custom_shapes import CustomOpShapePass

    custom = {(n.domain, n.op_type) for n in model.graph.node if n.domain not in STANDARD_DOMAINS}
    try:
        if not any(lookup(domain, op) is not None for domain, op in custom):
            return model
        typed = ir.from_proto(model)
        ShapeInferencePass(strict_mode=False)(typed)
        CustomOpShapePass()(typed)
    except Exception:  # a broken plugin or shape function, an unreadable graph: reported later, by name
        return model
    return ir.to_proto(typed)


def import_onnx(source: ModelSource) -> tuple[ir.Model, str]:
    """Read, validate and normalise a model, and return it as onnx-ir with a note."""
    model = read_onnx(source)
    model, note = normalise_opset(model)
    model, freed = free_dims(model)
    note = "; ".join([note, *freed])
    try:
        return ir.from_proto(model), note
    except Exception as exc:
        raise ModelLoadError(f"cannot build the graph IR: {exc}") from exc
