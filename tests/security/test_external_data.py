"""Attack: a tensor whose data is "external", at a path the pool (or the compiler) can read.

A .hamr graph may point its large initializers at its own weights member and nowhere else;
at compile, ONNX external data is read only from under the model's directory.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from tests.helpers import hamr_cli, npy, one_error_line
from tests.security.forge import forge, member


def _externalise(tensor: TensorProto, location: str, length: int) -> TensorProto:
    tensor.ClearField("raw_data")
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = TensorProto.EXTERNAL
    return tensor


def _secret_tensor(name: str, size: int) -> TensorProto:
    return numpy_helper.from_array(np.zeros(size, np.uint8), name)


def benign_model(size: int) -> onnx.ModelProto:
    """y = the uint8 initializer s; z = x (so the model has an input to submit)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["y"]), helper.make_node("Identity", ["x"], ["z"])],
        "leak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [
            helper.make_tensor_value_info("y", TensorProto.UINT8, [size]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [1]),
        ],
        [_secret_tensor("s", size)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def with_graph(size: int, edit) -> bytes:
    """A genuine reference .hamr of the benign model whose graph member `edit(graph)` changed (hashes recomputed)."""
    data = hamr.compile(benign_model(size), targets=["reference"]).to_bytes()
    proto = onnx.ModelProto.FromString(member(data, "graph"))
    edit(proto)
    return forge(data, {"graph": proto.SerializeToString()})


def reading(path: str, size: int) -> bytes:
    return with_graph(size, lambda m: _externalise(m.graph.initializer[0], path, size))


# -- against a real pool ------------------------------------------------------------------


def test_an_upload_reading_the_admin_token_is_refused_with_one_line(real_pool):
    token_file = real_pool.root / "admin.token"
    size = token_file.stat().st_size
    client = real_pool.alice.client
    answer = client.post("/v1/executables", content=reading(str(token_file), size))
    assert 400 <= answer.status_code < 500, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "not from the file's own weights" in detail, detail
    # had it been stored, a job would now return the admin token as output y
    listed = client.get("/v1/executables").json()
    assert listed == [], listed
    job = client.post("/v1/jobs", data={"executable_id": "1"}, files={"x": ("x.npy", npy(np.zeros(1, np.float32)))})
    assert job.status_code == 404, job.text


# -- at load --------------------------------------------------------------------------------


def _constant(model: onnx.ModelProto, location: str) -> None:
    value = _externalise(_secret_tensor("c", 8), location, 8)
    model.graph.node.append(helper.make_node("Constant", [], ["c"], value=value))


def _subgraph(model: onnx.ModelProto, location: str) -> None:
    inner = helper.make_graph(
        [helper.make_node("Identity", ["t"], ["o"])],
        "then",
        [],
        [helper.make_tensor_value_info("o", TensorProto.UINT8, [8])],
        [_externalise(_secret_tensor("t", 8), location, 8)],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["e"], ["o2"])],
        "else",
        [],
        [helper.make_tensor_value_info("o2", TensorProto.UINT8, [8])],
        [_secret_tensor("e", 8)],
    )
    model.graph.node.append(helper.make_node("If", ["cond"], ["branch"], then_branch=inner, else_branch=other))


def _sparse(model: onnx.ModelProto, location: str) -> None:
    values = _externalise(_secret_tensor("sp", 8), location, 8)
    indices = numpy_helper.from_array(np.arange(8, dtype=np.int64), "sp_i")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [16]))


def _not_in_the_index(model: onnx.ModelProto, location: str) -> None:
    _externalise(model.graph.initializer[0], "hamr:weights", 40)  # the right location, but no index entry


POSITIONS = {
    "initializer": lambda m, loc: _externalise(m.graph.initializer[0], loc, 40),
    "constant attribute": _constant,
    "subgraph initializer": _subgraph,
    "sparse initializer": _sparse,
    "weights location without an index entry": _not_in_the_index,
}


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("location", ["/etc/hostname", "../../etc/hostname"])
def test_load_refuses_external_data_that_is_not_the_files_own_weights(position, location, tmp_path):
    data = with_graph(40, lambda m: POSITIONS[position](m, location))
    with pytest.raises(hamr.FormatError, match="not from the file's own weights"):
        hamr.load(data)
    path = tmp_path / "leak.hamr"
    path.write_bytes(data)
    with pytest.raises(hamr.FormatError, match="not from the file's own weights"):
        hamr.load(path, verify=False)
    assert "not from the file's own weights" in one_error_line(hamr_cli("inspect", path))


def test_large_weights_still_come_from_the_weights_member():
    weights = np.arange(1000, dtype=np.float32)  # large enough to go to the weights member
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1000])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    loaded = hamr.load(hamr.compile(model, targets=["reference"]).to_bytes())
    assert loaded.members["weights"]["size"] >= weights.nbytes
    x = np.ones(1000, np.float32)
    np.testing.assert_array_equal(hamr.Session(loaded, device="cpu").run({"x": x})["y"], x + weights)


# -- at compile -----------------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path):
    """model/ (the model's directory) beside secret/secret.bin, which no model may read."""
    (tmp_path / "model").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "secret.bin").write_bytes(b"S" * 40)
    return tmp_path


def _model_reading(layout, location: str, constant: bool = False) -> onnx.ModelProto:
    model = benign_model(40)
    if constant:
        model.graph.node[0].CopyFrom(
            helper.make_node("Constant", [], ["y"], value=_externalise(_secret_tensor("c", 40), location, 40))
        )
        del model.graph.initializer[:]
    else:
        _externalise(model.graph.initializer[0], location, 40)
    return model


def _save(layout, model: onnx.ModelProto):
    path = layout / "model" / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlinked file", "symlinked directory", "absolute constant"])
def test_compile_reads_external_data_only_under_the_models_directory(layout, how):
    secret = layout / "secret" / "secret.bin"
    if how == "symlinked file":
        os.symlink(secret, layout / "model" / "link.bin")
    if how == "symlinked directory":
        os.symlink(layout / "secret", layout / "model" / "linked")
    location = {
        "absolute": str(secret),
        "dotdot": "../secret/secret.bin",
        "symlinked file": "link.bin",
        "symlinked directory": "linked/secret.bin",
        "absolute constant": str(secret),
    }[how]
    path = _save(layout, _model_reading(layout, location, constant=how.endswith("constant")))
    with pytest.raises(hamr.ModelLoadError, match="external data"):
        hamr.compile(path, targets=["reference"])
    line = one_error_line(hamr_cli("compile", path, "-o", layout / "out.hamr", "--target", "reference"))
    assert "cannot read its external data" in line, line
    assert not (layout / "out.hamr").exists()


@pytest.mark.parametrize("as_bytes", [True, False])
def test_a_model_given_in_memory_with_external_data_is_refused(layout, as_bytes, monkeypatch):
    monkeypatch.chdir(layout / "secret")  # a relative location would be read from the working directory
    model = _model_reading(layout, "secret.bin")
    with pytest.raises(hamr.ModelLoadError, match="has no directory"):
        hamr.compile(model.SerializeToString() if as_bytes else model, targets=["reference"])


def test_external_data_beside_the_model_still_compiles(layout):
    model = benign_model(40)
    tensor = model.graph.initializer[0]
    (layout / "model" / "data").mkdir()
    (layout / "model" / "data" / "w.bin").write_bytes(bytes(range(40)))
    _externalise(tensor, "data/w.bin", 40)
    path = _save(layout, model)
    exe = hamr.compile(path, targets=["reference"])
    y = hamr.Session(hamr.load(exe.to_bytes()), device="cpu").run({"x": np.zeros(1, np.float32)})["y"]
    np.testing.assert_array_equal(y, np.arange(40, dtype=np.uint8))
