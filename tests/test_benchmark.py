"""hamr.benchmark: the fair interleaving of the runtimes, the peers, and bench_model's report."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from hamr import models
from hamr.benchmark import bench_model, interleaved
from hamr.benchmark.peers import PeerUnavailable, iree_peer, onnxruntime_peer
from hamr.errors import HamrError
from tests.helpers import require


def test_each_runtime_leads_a_round_and_gets_its_runs():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("hamr", "onnxruntime", "iree")}
    times = interleaved(runners, runs=6, warmup=1, rounds=3, pause_s=0)
    assert {name: len(t) for name, t in times.items()} == {"hamr": 6, "onnxruntime": 6, "iree": 6}
    timed = calls[3:]  # after one warm-up run each
    block = 1 + 2  # one untimed run, then runs / rounds timed ones
    leaders = [timed[i * 3 * block] for i in range(3)]
    assert sorted(leaders) == ["hamr", "iree", "onnxruntime"]


def test_bench_model_reports_hamr_beside_onnxruntime(tmp_path):
    require("onnxruntime")
    path = tmp_path / "mlp.onnx"
    onnx.save(models.mlp3(width=64), path)
    result = bench_model(path, device="cpu", runs=4, warmup=1, rounds=2, pause_s=0, dims={"batch": 2})
    ort = result["peers"]["onnxruntime"]
    assert ort["name"].startswith("onnxruntime ") and ort["runs"] == 4 and result["hamr"]["runs"] == 4
    assert result["ratio"] == pytest.approx(result["hamr"]["median_ms"] / ort["median_ms"])
    assert result["inputs"] == {"x": [2, 784]}


def test_an_unknown_peer_is_one_clear_error(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(models.mlp3(width=16), path)
    with pytest.raises(HamrError, match="unknown peer 'tvm'; supported: onnxruntime, iree"):
        bench_model(path, device="cpu", compare="onnxruntime,tvm", runs=1, warmup=0, rounds=1, pause_s=0)


def test_iree_runs_what_it_imports_and_says_why_it_refuses_the_rest(tmp_path):
    require("onnxruntime")
    require("iree.runtime", extra="bench")
    require("iree.compiler", extra="bench")
    path = tmp_path / "mlp.onnx"
    onnx.save(models.mlp3(width=32), path)
    feeds = {"x": np.random.default_rng(0).random((3, 784), dtype=np.float32)}
    (got,) = iree_peer(path, threads=1, cache_dir=tmp_path / "iree").run(feeds)
    (expected,) = onnxruntime_peer(path, threads=1).run(feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    romanizer = models.romanizer_encoder()
    if romanizer is None:
        pytest.skip("arabic-name-romanizer is not installed (pip install -e '.[test]')")
    with pytest.raises(PeerUnavailable, match=r"iree-compile refused it: .*\(onnx\.GRU\)"):
        iree_peer(romanizer, threads=1, cache_dir=tmp_path / "iree")


def test_peak_memory_of_each_runtime_counts_the_model_weights(tmp_path):
    """A 16 MiB weight: each runtime's peak, measured in a fresh process, holds it at least once."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(3).standard_normal((2048, 2048)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2048])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2048])],
        [numpy_helper.from_array(w, "w")],
    )
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    result = bench_model(path, device="cpu", runs=1, warmup=0, rounds=1, pause_s=0, memory=True)
    peaks = result["model_peak_mb"]
    assert 16 <= peaks["onnxruntime"] < 400
    assert 16 <= peaks["hamr"] < 400


def test_peak_memory_of_a_model_that_does_not_load_is_one_clear_error(tmp_path):
    from hamr.benchmark.memory import peak_bytes

    (tmp_path / "bad.hamr").write_bytes(b"not a hamr file")
    with pytest.raises(RuntimeError, match="^hamr: .*bad.hamr"):
        peak_bytes("hamr", tmp_path / "bad.hamr", {"x": np.zeros(1, np.float32)}, "cpu")
