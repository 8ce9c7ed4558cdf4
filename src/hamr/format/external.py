"""External data in a .hamr graph: only main-graph initializers resolved from the file's weights member.

ONNX lets any tensor say its bytes live in another file (`data_location: EXTERNAL` and a
`location`). A .hamr file uses that only to point its large initializers at its own weights
member (location `hamr:weights`); any other external tensor would make the runtime read a
path the file names, so it is refused at load.
"""

from __future__ import annotations

import onnx

from hamr.errors import FormatError

WEIGHTS_LOCATION = "hamr:weights"  # external-data location of weights that live in the weights member


def is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL  # onnx and onnx-ir ignore external_data otherwise


def location(tensor: onnx.TensorProto) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def _attribute_tensors(node: onnx.NodeProto):
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        for sparse in [attribute.sparse_tensor] * attribute.HasField("sparse_tensor") + list(attribute.sparse_tensors):
            yield sparse.values
            yield sparse.indices


def _subgraphs(node: onnx.NodeProto):
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def _graph_tensors(graph: onnx.GraphProto, main: bool):
    """(tensor, is a main-graph initializer) for every tensor in `graph` and its subgraphs."""
    stack = [(graph, main)]
    while stack:
        current, is_main = stack.pop()
        for tensor in current.initializer:
            yield tensor, is_main
        for sparse in current.sparse_initializer:
            yield sparse.values, False
            yield sparse.indices, False
        for node in current.node:
            for tensor in _attribute_tensors(node):
                yield tensor, False
            stack.extend((sub, False) for sub in _subgraphs(node))


def all_tensors(model: onnx.ModelProto):
    """(tensor, is a main-graph initializer) for every tensor of `model`: graphs, subgraphs, attributes,
    sparse tensors, functions and training info."""
    yield from _graph_tensors(model.graph, True)
    for function in model.functions:
        for node in function.node:
            for tensor in _attribute_tensors(node):
                yield tensor, False
            for sub in _subgraphs(node):
                yield from _graph_tensors(sub, False)
    for info in model.training_info:
        yield from _graph_tensors(info.initialization, False)
        yield from _graph_tensors(info.algorithm, False)


def check_external_data(model: onnx.ModelProto, weights: set[str], label: str) -> None:
    """FormatError unless every external tensor is a main-graph initializer listed in the weights index."""
    for tensor, main_initializer in all_tensors(model):
        if not is_external(tensor):
            continue
        if main_initializer and tensor.name in weights and location(tensor) == WEIGHTS_LOCATION:
            continue
        raise FormatError(
            f"{label}: refused: tensor {tensor.name!r} takes its data from {location(tensor)!r}, "
            "not from the file's own weights"
        )
