"""The PyTorch frontend: ``torch.export``, then PyTorch's ONNX exporter (onnxscript), then ONNX like any model.

An ``nn.Module`` is captured with ``torch.export.export`` (non-strict, torch's default); a ``.pt2`` file is an
``ExportedProgram`` that ``torch.export.save`` wrote. Either goes through ``torch.onnx.export(program,
dynamo=True)``, and the ``ModelProto`` it gives goes through hamr's own import. Dimensions that
``dynamic_shapes`` marks dynamic stay symbolic, named after their ``Dim``.

torch and onnxscript are the ``torch`` extra (``pip install 'hamr[torch]'``), imported when a model is
exported, never when hamr is. Every failure is one line naming what torch could not capture or translate
and where in the model's code (``file:line``, from torch's own record of the source).

A ``.pt2`` file is loaded with ``torch.export.load``, which unpickles parts of the archive (weights and
constants through ``torch.load(weights_only=False)``): loading one can run arbitrary code, as loading any
pickle can. Compile only ``.pt2`` files you trust.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
import re
import sys
import sysconfig
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx

from hamr.errors import ModelLoadError, UnsupportedOpError, first_line
from hamr.frontends.torch_custom_ops import translation_table

INSTALL_HINT = "pip install 'hamr[torch]'"

# torch's loggers that report progress or deprecations while exporting (hamr reports failures itself).
_NOISY_LOGGERS = ("torch", "torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch.fx", "onnxscript")

# A frame of a python traceback, as torch's messages and nodes' stack traces quote them, with its code line.
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)[^\n]*(?:\n[ \t]*(?P<code>[^\n]*))?')
_OP_OVERLOAD = re.compile(r"op='(?P<op>[\w.]+)', overload='(?P<overload>\w+)'")
_NODE_TARGET = re.compile(r"target=torch\.ops\.(?P<target>[\w.]+)")


def is_torch_model(source: Any) -> bool:
    """Whether `source` is a torch ``nn.Module`` or ``ExportedProgram`` (without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return isinstance(source, (torch.nn.Module, torch.export.ExportedProgram))


def is_exported_program_file(source: Any) -> bool:
    """Whether `source` names a ``.pt2`` file (a saved ``torch.export`` program)."""
    return isinstance(source, (str, Path)) and Path(source).suffix == ".pt2"


def export_module(module: Any, example_args: tuple = (), dynamic_shapes: Any = None) -> onnx.ModelProto:
    """An ``nn.Module`` (or an ``ExportedProgram``) as an ONNX model, through torch.export and the ONNX exporter.

    `example_args` are the positional inputs torch.export traces with (a lone tensor is one argument);
    `dynamic_shapes` is torch.export's argument of that name (``torch.export.Dim`` per dynamic axis). The
    module is traced in eval mode, for inference (dropout off, batch norms on their running statistics), and
    left in the mode it was in.
    """
    torch = _import_torch()
    if isinstance(module, torch.export.ExportedProgram):
        return _to_onnx(torch, module, "model")
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"expected a torch.nn.Module or an ExportedProgram, got {type(module).__name__}")
    args = tuple(example_args) if isinstance(example_args, (tuple, list)) else (example_args,)
    with _eval_mode(module):
        program = _capture(torch, module, args, dynamic_shapes)
    model = _to_onnx(torch, program, type(module).__name__)
    _name_dynamic_axes(model, dynamic_shapes)
    return model


def load_exported_program(path: str | Path) -> onnx.ModelProto:
    """A ``.pt2`` file of ``torch.export.save`` as an ONNX model. Unpickles: load only files you trust."""
    torch = _import_torch()
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        with _quiet():
            program = torch.export.load(path)
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a torch.export program (.pt2): {first_line(exc)}") from exc
    return _to_onnx(torch, program, path.stem)


def _import_torch():
    for package in ("torch", "onnxscript"):  # onnxscript: the ONNX exporter's, named here when it is missing
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise ModelLoadError(f"compiling a PyTorch model needs {package}: {INSTALL_HINT}") from exc
    return sys.modules["torch"]


@contextlib.contextmanager
def _eval_mode(module) -> Iterator[None]:
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _capture(torch, module, args: tuple, dynamic_shapes: Any):
    rnn_loops = _loop_rnn_decompositions() if dynamic_shapes else contextlib.nullcontext()
    try:
        with _quiet(), rnn_loops:
            return torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as exc:
        raise ModelLoadError(f"torch.export cannot capture the model: {_export_failure(exc)}") from exc


@contextlib.contextmanager
def _loop_rnn_decompositions() -> Iterator[None]:
    """nn.GRU and nn.LSTM decomposed as a while_loop rather than unrolled, as torch.onnx.export does it.

    The default decomposition unrolls the sequence, which specialises a dynamic sequence length to the
    example's. With the loop, torch.export keeps the op and its dynamic length, and the ONNX exporter writes
    one ONNX GRU (LSTM). torch ships the loop decompositions in ``torch.export._patches`` (the exporter's own
    capture enters them the same way); where a torch release lacks them, the default stays.
    """
    try:
        from torch.export._patches import (
            register_gru_while_loop_decomposition,
            register_lstm_while_loop_decomposition,
        )
    except ImportError:
        yield
        return
    with register_gru_while_loop_decomposition(), register_lstm_while_loop_decomposition():
        yield


def _to_onnx(torch, program, name: str) -> onnx.ModelProto:
    custom_ops = translation_table(program)
    try:
        with _quiet(), _loop_rnn_decompositions():  # or the exporter's own decompositions would unroll them
            onnx_program = torch.onnx.export(program, dynamo=True, custom_translation_table=custom_ops, verbose=False)
    except Exception as exc:
        raise _conversion_failure(program, exc) from exc
    model = onnx_program.model_proto
    model.graph.name = name
    return model


def _name_dynamic_axes(model: onnx.ModelProto, dynamic_shapes: Any) -> None:
    """Name the dynamic axes after their ``Dim`` (``batch``) rather than torch's symbols (``s77``), everywhere."""
    specs = _axis_specs(model, dynamic_shapes)
    renames = {}
    for value, spec in zip(model.graph.input, specs):
        axes = spec.items() if isinstance(spec, dict) else enumerate(spec or ())
        dims = value.type.tensor_type.shape.dim
        for axis, dim in axes:
            name = getattr(dim, "__name__", None)  # a Dim's; hints (Dim.DYNAMIC) and ints have none
            if isinstance(name, str) and axis < len(dims) and dims[axis].dim_param:
                renames.setdefault(dims[axis].dim_param, name)
    if renames:
        symbol = re.compile(r"\b(" + "|".join(map(re.escape, renames)) + r")\b")
        for value in _value_infos(model.graph):
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param:
                    dim.dim_param = symbol.sub(lambda m: renames[m[1]], dim.dim_param)


def _axis_specs(model: onnx.ModelProto, dynamic_shapes: Any) -> list:
    """One ``dynamic_shapes`` entry per graph input (they are the forward's tensor arguments, in order)."""
    if isinstance(dynamic_shapes, dict):
        return [dynamic_shapes.get(value.name) for value in model.graph.input]
    if isinstance(dynamic_shapes, (tuple, list)) and len(dynamic_shapes) == len(model.graph.input):
        return list(dynamic_shapes)
    return []


def _value_infos(graph: onnx.GraphProto) -> Iterator[onnx.ValueInfoProto]:
    yield from (*graph.input, *graph.output, *graph.value_info)
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in (attribute.g, *attribute.graphs) if attribute.HasField("g") else attribute.graphs:
                yield from _value_infos(subgraph)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's warnings, log lines and prints while exporting, kept off the terminal."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export_failure(exc: BaseException) -> str:
    """torch.export's error as ``<what> at <file>:<line>``: its first line, and the user's frame it names."""
    text = str(exc)
    summary = _summary(text)
    where = _last_user_frame(text) or _user_frame_of_traceback(exc)
    return f"{summary} at {where}" if where else summary


def _summary(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no message"
    summary = " ".join(lines[0].split())
    detail = next((line[2:] for line in lines[1:3] if line.startswith("- ")), None)
    return f"{summary} {detail}" if detail else summary


def _conversion_failure(program, exc: BaseException) -> Exception:
    """The ONNX exporter's error: the op it has no translation for, or the node it failed on, and where."""
    chain = _causes(exc)
    dispatch = next((c for c in chain if type(c).__name__ == "DispatchError"), None)
    if dispatch is not None and (match := _OP_OVERLOAD.search(str(dispatch))):
        op = match["op"].replace(".", "::", 1)
        where = _source_of(program, f"{match['op']}.{match['overload']}")
        return UnsupportedOpError(
            f"the PyTorch ONNX exporter has no translation for {op}"
            + (f" at {where}" if where else "")
            + f" (a torch.library op maps to a hamr CustomOp registered with torch_op={op!r})",
            [op],
        )
    target = next((m["target"] for c in chain if (m := _NODE_TARGET.search(str(c)))), None)
    where = _source_of(program, target) if target else None
    innermost = first_line(chain[-1])
    what = f"{target.replace('.', '::', 1)}" if target else "the exported program"
    return ModelLoadError(
        f"the PyTorch ONNX exporter cannot translate {what}" + (f" at {where}" if where else "") + f": {innermost}"
    )


def _causes(exc: BaseException) -> list[BaseException]:
    chain = [exc]
    while (following := chain[-1].__cause__ or chain[-1].__context__) is not None and following not in chain:
        chain.append(following)
    return chain


def _source_of(program, target: str) -> str | None:
    """``file:line`` of the user's code that made the first node calling `target` (``aten.add.Tensor``)."""
    graphs = [module.graph for module in program.graph_module.modules() if hasattr(module, "graph")]
    for graph in graphs:
        for node in graph.nodes:
            if node.op == "call_function" and str(node.target) == target:
                return _last_user_frame(node.meta.get("stack_trace") or "")
    return None


def _last_user_frame(text: str) -> str | None:
    """``file:line (`code`)`` of the innermost frame of the model's own code that `text` quotes."""
    user = [m for m in _FRAME.finditer(text) if not _in_library(m["file"])]
    return _place(user[-1]["file"], user[-1]["line"], user[-1]["code"]) if user else None


def _user_frame_of_traceback(exc: BaseException) -> str | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _in_library(f.filename)]
    return _place(frames[-1].filename, frames[-1].lineno, frames[-1].line) if frames else None


def _place(file: str, line: int | str, code: str | None) -> str:
    code = (code or "").strip()
    return f"{file}:{line} (`{code}`)" if code and not code.startswith("File ") else f"{file}:{line}"


def _in_library(file: str) -> bool:
    """A frame of torch, onnxscript, hamr or the standard library: not the model's own code."""
    if file.startswith("<"):
        return True
    path = Path(file).resolve()
    if any(path.is_relative_to(root) for root in _library_roots()):
        return True
    installed = (Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib"))
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return path.is_relative_to(stdlib) and not any(path.is_relative_to(root) for root in installed)


@functools.cache
def _library_roots() -> tuple[Path, ...]:
    import onnxscript
    import torch

    packages = (Path(module.__file__).resolve().parent for module in (torch, onnxscript))
    return (*packages, Path(__file__).resolve().parent.parent)  # and hamr's own
