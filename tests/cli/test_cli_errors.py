"""The real `hamr` command line, as a subprocess: every failure is one line and exit status 2."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from tests.helpers import hamr_cli, one_error_line

W = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
B = np.array([0.5, -1.0, 2.0], np.float32)
OUT_NAME = "y/out:0"


def save_model(path: Path, graph: onnx.GraphProto, *, check: bool = True, extra_opsets=()) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *extra_opsets], ir_version=8)
    if check:
        onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def affine_graph() -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], [OUT_NAME])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info(OUT_NAME, TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """An ONNX model, its .hamr built in-process, good and bad input files, and broken executables."""
    root = tmp_path_factory.mktemp("cli")
    save_model(root / "m.onnx", affine_graph())
    hamr.compile(root / "m.onnx").save(root / "m.hamr")
    data = (root / "m.hamr").read_bytes()

    np.save(root / "x.npy", np.arange(8, dtype=np.float32).reshape(2, 4))
    np.save(root / "x_int.npy", np.arange(8, dtype=np.int64).reshape(2, 4))
    np.save(root / "x_wide.npy", np.zeros((2, 5), np.float32))
    np.save(root / "x_rank3.npy", np.zeros((2, 4, 1), np.float32))

    header = struct.unpack_from("<8sIIQQ", data)
    manifest = json.loads(data[header[3] : header[3] + header[4]])
    graph = manifest["members"]["graph"]
    corrupt = bytearray(data)
    corrupt[graph["offset"] + graph["size"] // 2] ^= 0xFF
    (root / "corrupt.hamr").write_bytes(bytes(corrupt))
    (root / "truncated.hamr").write_bytes(data[: len(data) // 2])
    (root / "truncated10.hamr").write_bytes(data[:10])
    newer = bytearray(data)
    struct.pack_into("<I", newer, 8, 2)
    (root / "newer.hamr").write_bytes(bytes(newer))
    return root


# -- bad models -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["compile", "run"])
def test_missing_onnx_file(work, command):
    extra = ["-o", str(work / "never.hamr")] if command == "compile" else []
    line = one_error_line(hamr_cli(command, work / "absent.onnx", *extra))
    assert "not found" in line
    assert "absent.onnx" in line
    assert not (work / "never.hamr").exists()


def test_malformed_onnx_file(work, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes())
    line = one_error_line(hamr_cli("compile", junk, "-o", tmp_path / "junk.hamr"))
    assert "junk.onnx" in line
    assert "not a valid ONNX model" in line
    assert not (tmp_path / "junk.hamr").exists()


def test_empty_onnx_file(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    line = one_error_line(hamr_cli("run", empty))
    assert "not a valid ONNX model" in line


def test_invalid_onnx_model_names_the_undefined_input(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "ghost"], ["y"])],
        "dangling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = save_model(tmp_path / "dangling.onnx", graph, check=False)
    with pytest.raises(onnx.checker.ValidationError):  # the premise: onnx itself rejects it
        onnx.checker.check_model(onnx.load(path))
    line = one_error_line(hamr_cli("compile", path, "-o", tmp_path / "d.hamr"))
    assert "dangling.onnx" in line
    assert "not a valid ONNX model" in line
    assert "ghost" in line


def test_unsupported_custom_op_is_named(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example", name="frob")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = save_model(tmp_path / "custom.onnx", graph, extra_opsets=[helper.make_opsetid("com.example", 1)])
    line = one_error_line(hamr_cli("compile", path, "-o", tmp_path / "c.hamr"))
    assert "Frobnicate" in line
    assert "unsupported" in line
    assert "frob" in line  # the node
    assert not (tmp_path / "c.hamr").exists()


# -- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["m.onnx", "m.hamr"])
def test_unknown_input_name(work, model):
    line = one_error_line(hamr_cli("run", work / model, "--input", f"nope={work / 'x.npy'}"))
    assert "unknown input 'nope'" in line
    assert "x" in line.split("inputs are:")[-1]


def test_wrong_dtype(work):
    line = one_error_line(hamr_cli("run", work / "m.hamr", "--input", f"x={work / 'x_int.npy'}"))
    assert "'x'" in line
    assert "int64" in line
    assert "float32" in line


def test_wrong_shape_names_the_expected_shape(work):
    line = one_error_line(hamr_cli("run", work / "m.hamr", "--input", f"x={work / 'x_wide.npy'}"))
    assert "'x'" in line
    assert "[2, 5]" in line  # what was given
    assert "float32[batch, 4]" in line  # what was expected


def test_wrong_rank_names_the_expected_shape(work):
    line = one_error_line(hamr_cli("run", work / "m.hamr", "--input", f"x={work / 'x_rank3.npy'}"))
    assert "[2, 4, 1]" in line
    assert "float32[batch, 4]" in line


def test_missing_input(work):
    line = one_error_line(hamr_cli("run", work / "m.hamr"))
    assert "missing input 'x'" in line
    assert "float32[batch, 4]" in line


def test_input_file_not_found(work):
    line = one_error_line(hamr_cli("run", work / "m.hamr", "--input", f"x={work / 'absent.npy'}"))
    assert "absent.npy" in line
    assert "not found" in line


def test_input_without_equals_sign(work):
    line = one_error_line(hamr_cli("run", work / "m.hamr", "--input", str(work / "x.npy")))
    assert "NAME=FILE.npy" in line


def test_input_file_that_is_not_npy(work, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"definitely not numpy")
    line = one_error_line(hamr_cli("run", work / "m.hamr", "--input", f"x={bad}"))
    assert "input file for 'x' is not a readable .npy file" in line and "bad.npy" in line
    assert "does not start with the .npy magic" in line and "pickle" not in line


# -- bad executables -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "inspect"])
@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("corrupt.hamr", ["corrupt", "'graph'"]),
        ("truncated.hamr", ["truncated"]),
        ("truncated10.hamr", ["truncated"]),
        ("newer.hamr", ["version 2", "version 1", "upgrade"]),
    ],
)
def test_bad_executable(work, command, file, expected):
    extra = ["--input", f"x={work / 'x.npy'}"] if command == "run" else []
    line = one_error_line(hamr_cli(command, work / file, *extra))
    assert file in line
    for text in expected:
        assert text in line


def test_inspect_missing_executable(work):
    line = one_error_line(hamr_cli("inspect", work / "absent.hamr"))
    assert "not found" in line


def test_inspect_onnx_file_is_not_a_hamr_file(work):
    line = one_error_line(hamr_cli("inspect", work / "m.onnx"))
    assert "not a .hamr file" in line


def test_debug_shows_the_traceback(work):
    result = hamr_cli("--debug", "inspect", work / "corrupt.hamr")
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "FormatError" in result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and "corrupt" in last


def test_debug_is_accepted_after_the_command(work):
    result = hamr_cli("inspect", work / "corrupt.hamr", "--debug")
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [(("frobnicate",), "No such command"), (("inspect",), "Missing argument"), (("run", "--bogus", "x"), "--bogus")],
)
def test_usage_errors_are_one_line(args, expected):
    result = hamr_cli(*args)
    assert result.returncode == 2
    assert expected in one_error_line(result)


# -- what works ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled(work) -> Path:
    result = hamr_cli("compile", work / "m.onnx", "-o", work / "cli.hamr")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return work / "cli.hamr"


def test_compile_writes_a_loadable_executable(compiled):
    exe = hamr.load(compiled)
    assert [s.name for s in exe.signature.inputs] == ["x"]
    assert [s.name for s in exe.signature.outputs] == [OUT_NAME]
    assert not compiled.with_name(compiled.name + ".partial").exists()


def test_run_writes_outputs_json_and_npy(work, compiled, tmp_path):
    out = tmp_path / "out"
    result = hamr_cli("run", compiled, "--input", f"x={work / 'x.npy'}", "--output-dir", out)
    assert result.returncode == 0, result.stderr
    assert "ran on cpu (" in result.stderr, "say where it ran"
    index = json.loads((out / "outputs.json").read_text())
    assert index == {OUT_NAME: "y_out_0.npy"}  # '/' and ':' are replaced by '_'
    assert sorted(p.name for p in out.iterdir()) == ["outputs.json", "y_out_0.npy"]
    got = np.load(out / index[OUT_NAME], allow_pickle=False)
    x = np.load(work / "x.npy")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x @ W + B, rtol=1e-5, atol=1e-5)


def test_run_onnx_directly_prints_outputs(work):
    result = hamr_cli("run", work / "m.onnx", "--input", f"x={work / 'x.npy'}")
    assert result.returncode == 0, result.stderr
    assert OUT_NAME in result.stdout
    assert "[2, 3]" in result.stdout


def test_inspect_json(compiled):
    result = hamr_cli("inspect", compiled, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["signature"]["inputs"] == [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": ["batch", 4]}]
    assert info["signature"]["outputs"] == [
        {"name": OUT_NAME, "kind": "tensor", "dtype": "float32", "shape": ["batch", 3]}
    ]
    from hamr.compiler import default_targets

    assert [v["target"] for v in info["variants"]] == default_targets()
    assert info["op_histogram"] == {"MatMul": 1, "Add": 1}
    assert {"graph", "weights", "variants/reference"} <= set(info["members"])
    assert set(info["placement"]) == set(info["placement_by_target"]["reference"])
    assert set(info["placement"].values()) == {default_targets()[0]}
    assert info["size"] == compiled.stat().st_size
    for member in info["members"].values():
        assert len(member["sha256"]) == 64 and member["size"] >= 0


def test_inspect_human_readable(compiled):
    result = hamr_cli("inspect", compiled)
    assert result.returncode == 0, result.stderr
    for text in ("affine", "signature", "variants", "members", "MatMul", "reference"):
        assert text in result.stdout
