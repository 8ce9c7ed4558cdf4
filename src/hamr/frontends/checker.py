"""onnx.checker as onnxruntime reads models: a graph input or output may leave its shape out.

A tensor type without a `shape` field means "rank unknown" in the ONNX IR, and exporters write it for outputs whose
rank depends on the inputs' values; onnxruntime runs such models, while onnx.checker demands the field. The checker
sees a copy in which those types carry an empty shape; the model itself keeps them unknown.
"""

from __future__ import annotations

import onnx


def check_model(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(_with_shape_fields(model))


def _with_shape_fields(model: onnx.ModelProto) -> onnx.ModelProto:
    if not any(_shapeless(info) for info in _ends(model.graph)):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for info in _ends(copy.graph):
        if _shapeless(info):
            info.type.tensor_type.shape.SetInParent()
    return copy


def _ends(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    return [*graph.input, *graph.output]


def _shapeless(info: onnx.ValueInfoProto) -> bool:
    return info.type.HasField("tensor_type") and not info.type.tensor_type.HasField("shape")
