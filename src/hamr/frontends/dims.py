"""Dimensions as onnxruntime reads them: a `dim_value` of 0 or less is dynamic, and a `dim_param` name repeated on
the axes of one tensor does not make those axes equal.

Exporters write both: `[-1, 3, '?', '?']` for an image model whose batch, height and width all vary. Each such
dimension of a graph input or output gets a name of its own, unique in the model, so that nothing downstream
(feed checks, shape inference, fusion) takes the axes to be equal; so do the intermediate value infos' repeats
of the names freed there. The dim_values of 0 or less of outputs and intermediates become unknown instead, for
shape inference to derive from the inputs: the version converter writes an input's -1 batch on every intermediate,
and a name of its own on each would keep fusion from seeing that a chain's tensors have one shape. Other names an intermediate repeats (an
attention mask's `[batch, 1, seq, seq]`) are the exporter's knowledge and stay. The same name on two different tensors still ties them.
"""

from __future__ import annotations

import onnx


def free_dims(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The model with those dimensions renamed (a copy; `model` is not changed), and a note per graph input."""
    ends = [*model.graph.input, *model.graph.output]
    loose = [(i, _loose_axes(info)) for i, info in enumerate(ends) if _is_shaped(info)]
    freed = {ends[i].type.tensor_type.shape.dim[axis].dim_param for i, axes in loose for axis in axes} - {""}
    inner = [(i, _loose_axes(info, freed)) for i, info in enumerate(model.graph.value_info) if _is_shaped(info)]
    if not any(axes for _, axes in loose + inner):
        return model, []
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    copied_ends = [*graph.input, *graph.output]
    targets = [(copied_ends[i], axes) for i, axes in loose] + [(graph.value_info[i], axes) for i, axes in inner]
    derived = {info.name for info in [*graph.output, *graph.value_info]} - {info.name for info in graph.input}
    taken = {d.dim_param for info in [*copied_ends, *graph.value_info] if _is_shaped(info) for d in _dims(info)}
    inputs = {i.name for i in graph.input}
    notes = []
    for info, axes in targets:
        changed = []
        for axis in axes:
            dim = _dims(info)[axis]
            if info.name in derived and dim.HasField("dim_value"):
                dim.Clear()  # for shape inference to derive from the inputs
                continue
            was = repr(dim.dim_param) if dim.HasField("dim_param") else str(dim.dim_value)
            dim.dim_param = _fresh(f"{info.name}_{axis}", taken)
            changed.append(f"axis {axis} ({was})")
        if changed and info.name in inputs:
            notes.append(f"input '{info.name}': {', '.join(changed)} left free")
    return copy, notes


def _is_shaped(info: onnx.ValueInfoProto) -> bool:
    return info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape")


def _dims(info: onnx.ValueInfoProto):
    return info.type.tensor_type.shape.dim


def _loose_axes(info: onnx.ValueInfoProto, only: set[str] | None = None) -> list[int]:
    """Axes with a dim_value of 0 or less, and every axis but the first that repeats a dim_param of this tensor
    (with `only`, a repeat of one of those names)."""
    seen, loose = set(), []
    for axis, dim in enumerate(_dims(info)):
        if dim.HasField("dim_value") and dim.dim_value <= 0:
            loose.append(axis)
        elif dim.HasField("dim_param") and dim.dim_param:
            if dim.dim_param in seen and (only is None or dim.dim_param in only):
                loose.append(axis)
            seen.add(dim.dim_param)
    return loose


def _fresh(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name
