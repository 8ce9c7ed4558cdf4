"""The command line with native targets: several variants in one file, devices, fallback warnings."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.helpers import hamr_cli, opencl_devices


def save(tmp_path, nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture
def mlp(tmp_path):
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    return save(
        tmp_path,
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )


def test_one_file_runs_on_every_device(mlp, tmp_path):
    out = tmp_path / "m.hamr"
    result = hamr_cli("compile", mlp, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    x = np.array([[1, -2, 3, 0.5]], np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = np.maximum(x @ (np.arange(12, dtype=np.float32).reshape(4, 3) / 10), 0)
    devices = ["auto", "cpu"] + (["opencl:0"] if "opencl:0" in opencl_devices() else [])
    for device in devices:
        result = hamr_cli(
            "run",
            out,
            "--device",
            device,
            "--input",
            f"x={tmp_path / 'x.npy'}",
            "--output-dir",
            tmp_path / device.replace(":", "_"),
        )
        assert result.returncode == 0, result.stderr
        target = "opencl" if device.startswith("opencl") else "cpu"
        assert f"({target})" in result.stderr
        np.testing.assert_allclose(np.load(tmp_path / device.replace(":", "_") / "y.npy"), expected, rtol=1e-5)


def test_inspect_json_shows_placement_per_node_and_peak_memory(mlp, tmp_path):
    out = tmp_path / "m.hamr"
    assert hamr_cli("compile", mlp, "-o", out, "--target", "cpu,reference").returncode == 0
    info = json.loads(hamr_cli("inspect", out, "--json").stdout)
    assert sorted(info["placement_by_target"]) == ["cpu", "reference"]
    assert set(info["placement"].values()) == {"cpu"} and len(info["placement"]) == 2
    assert info["memory"]["cpu"]["peak_bytes"] > 0
    human = hamr_cli("inspect", out).stdout
    assert "planned peak" in human


def test_compile_warns_with_the_ops_that_fall_back(tmp_path):
    path = save(
        tmp_path,
        [helper.make_node("NonZero", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, None])],
    )
    result = hamr_cli("compile", path, "-o", tmp_path / "nz.hamr", "--target", "cpu")
    assert result.returncode == 0, result.stderr
    assert "warning: cpu: 1 node(s) fall back to reference: NonZero" in result.stderr


def test_unknown_device_is_one_line(mlp, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    result = hamr_cli("run", mlp, "--device", "opencl:7", "--input", f"x={tmp_path / 'x.npy'}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "opencl:7" in result.stderr


@pytest.mark.opencl
def test_devices_lists_the_opencl_device():
    result = hamr_cli("devices", "--json")
    assert result.returncode == 0, result.stderr
    found = {d["id"]: d for d in json.loads(result.stdout)}
    assert found["cpu"]["targets"] == ["cpu", "reference"]
    assert found["opencl:0"]["targets"] == ["opencl"] and found["opencl:0"]["compute_units"] >= 1
