"""Worker processes of the pool: a job per request over JSON lines, outputs committed by rename,
and a worker killed mid-job."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

import hamr
from hamr.pool.nodes.local.workers import WorkerDied, WorkerProcess
from hamr.runtime.npy_io import read_outputs
from tests.helpers import DEVICES, mlp_model, mlp_reference, native_targets


@pytest.fixture(scope="module")
def executable(tmp_path_factory):
    return hamr.compile(mlp_model(), targets=native_targets()).save(tmp_path_factory.mktemp("exe") / "mlp.hamr")


def request(job, attempt, executable, tmp_path, x):
    np.save(tmp_path / f"x-{job}.npy", x)
    return {
        "job": job,
        "attempt": attempt,
        "executable": str(executable),
        "inputs": {"x": str(tmp_path / f"x-{job}.npy")},
        "outputs": str(tmp_path / job),
    }


@pytest.mark.parametrize("device", DEVICES)
def test_a_worker_runs_jobs_and_commits_their_outputs(executable, tmp_path, device):
    worker = WorkerProcess(device)
    try:
        for i, batch in enumerate((2, 5)):
            x = np.random.default_rng(i).standard_normal((batch, 16)).astype(np.float32)
            reply = worker.run(request(f"j{i}", 1, executable, tmp_path, x), timeout=120)
            assert reply["ok"], reply
            assert (reply["device"], reply["target"]) == (device, "cpu" if device == "cpu" else "opencl")
            assert reply["latency_s"] > 0
            np.testing.assert_allclose(read_outputs(reply["outputs"])["y"], mlp_reference(x), rtol=1e-4, atol=1e-5)
        bad = worker.run(
            {
                "job": "j9",
                "attempt": 1,
                "executable": str(executable),
                "inputs": {"x": "/nonexistent.npy"},
                "outputs": str(tmp_path / "j9"),
            },
            timeout=60,
        )
        assert not bad["ok"] and bad["error"].startswith("input file not found for 'x'")
        assert not (tmp_path / "j9" / "attempt-1").exists()
        assert worker.alive()
    finally:
        worker.close()


def test_a_worker_killed_mid_job_is_detected_and_a_new_attempt_completes(executable, tmp_path):
    x = np.ones((3, 16), np.float32)
    worker = WorkerProcess("cpu")
    worker.submit(request("k", 1, executable, tmp_path, x))
    worker.proc.send_signal(signal.SIGKILL)
    with pytest.raises(WorkerDied, match="exited with status -9"):
        worker.result(timeout=60)
    assert not (tmp_path / "k" / "attempt-1").exists() or (tmp_path / "k" / "attempt-1" / "outputs.json").exists()
    again = WorkerProcess("cpu")
    try:
        reply = again.run(request("k", 2, executable, tmp_path, x), timeout=120)
    finally:
        again.close()
    assert reply["ok"]
    np.testing.assert_allclose(read_outputs(tmp_path / "k" / "attempt-2")["y"], mlp_reference(x), rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "k" / "attempt-2" / "outputs.json").read_text()) == {"y": "y.npy"}
    assert not list((tmp_path / "k").glob("*.partial"))


def test_a_malformed_request_gets_one_error_line(tmp_path):
    worker = WorkerProcess("cpu")
    try:
        worker.proc.stdin.write(b"[1, 2]\n{not json\n")
        worker.proc.stdin.flush()
        assert worker.result(timeout=30) == {"ok": False, "error": "bad request: a request is a JSON object"}
        assert worker.result(timeout=30)["error"].startswith("bad request: ")
    finally:
        worker.close()
