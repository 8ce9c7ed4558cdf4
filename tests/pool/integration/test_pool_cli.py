"""`hamr pool up` then `hamr pool submit`, as the README says: a real server process on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import hamr
from tests.cli.test_cli_errors import hamr_cli, one_error_line
from tests.runtime.test_runtime import OPENCL, mlp_model, mlp_reference


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    env = {**os.environ, "HAMR_POOL_DIR": str(root / "data"), "HAMR_CACHE_DIR": str(root / "cache"), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hamr.cli.app", "pool", "up", "--port", "0", "--heartbeat-timeout", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 90
    while not (root / "data" / "pool.json").is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"hamr pool up did not start: {proc.stdout.read()}")
        time.sleep(0.2)
    url = json.loads((root / "data" / "pool.json").read_text())["url"]
    _wait_for(url)
    yield root, env, url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait_for(url: str) -> None:
    import httpx

    for _ in range(200):
        try:
            httpx.get(url + "/metrics", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)


def run(env, *args):
    old = dict(os.environ)
    os.environ.update(env)
    try:
        return hamr_cli(*args)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_submit_runs_on_the_pool_and_writes_outputs_like_hamr_run(pool, tmp_path):
    root, env, url = pool
    exe = hamr.compile(mlp_model(), targets=["cpu"]).save(tmp_path / "mlp.hamr")
    x = np.random.default_rng(5).standard_normal((3, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run(env, "pool", "submit", exe, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded on" in result.stderr
    index = json.loads((tmp_path / "out" / "outputs.json").read_text())
    np.testing.assert_allclose(np.load(tmp_path / "out" / index["y"]), mlp_reference(x), rtol=1e-4, atol=1e-5)

    listed = run(env, "pool", "jobs", "--json", "--explain")
    assert listed.returncode == 0, listed.stderr
    job = json.loads(listed.stdout)[-1]
    assert job["state"] == "succeeded" and job["placements"][0]["reason"].startswith("max_throughput:")


def test_tenants_status_and_drain(pool, tmp_path):
    root, env, url = pool
    added = run(env, "pool", "tenant", "add", "acme")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("hamr_")
    assert token not in (root / "data" / "pool.db").read_bytes().decode("latin-1")
    status = run(env, "pool", "status", "--json")
    assert status.returncode == 0, status.stderr
    devices = json.loads(status.stdout)["devices"]
    assert "cpu" in {d["local_id"] for d in devices}
    # another tenant sees none of default's jobs
    theirs = run({**env, "HAMR_TOKEN": token}, "pool", "jobs", "--json")
    assert theirs.returncode == 0 and json.loads(theirs.stdout) == []
    limits = run(env, "pool", "tenant", "set", "acme", "--max-priority", "10", "--weight", "3", "--max-queued-jobs", "none",
                 "--max-inflight-requests", "4")  # fmt: skip
    assert limits.returncode == 0, limits.stderr
    shown = json.loads(limits.stdout)
    assert (shown["max_priority"], shown["weight"], shown["max_queued_jobs"], shown["max_inflight_requests"]) == (10, 3, None, 4)
    assert "no tenant named 'nobody'" in one_error_line(run(env, "pool", "tenant", "set", "nobody", "--weight", "2"))
    assert "takes a number or 'none'" in one_error_line(run(env, "pool", "tenant", "set", "acme", "--max-queued-jobs", "lots"))
    drained = run(env, "pool", "drain", "cpu")
    assert drained.returncode == 0 and drained.stdout.startswith("drained cpu")
    assert run(env, "pool", "drain", "cpu", "--undo").returncode == 0


def test_client_errors_are_one_line(pool, tmp_path):
    root, env, url = pool
    message = one_error_line(run({**env, "HAMR_TOKEN": "hamr_not-a-token"}, "pool", "jobs"))
    assert "(401)" in message
    message = one_error_line(run({**env, "HAMR_POOL_DIR": str(tmp_path)}, "pool", "jobs"))
    assert "no pool found" in message
    message = one_error_line(run(env, "pool", "drain", "tpu:7"))
    assert "names 0 devices" in message
    port = url.rsplit(":", 1)[1]  # the running pool's: a second pool cannot take it, and says so before opening anything
    message = one_error_line(run({**env, "HAMR_POOL_DIR": str(tmp_path / "second")}, "pool", "up", "--port", port))
    assert message == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert not (tmp_path / "second" / "pool.json").exists()


def test_a_node_that_stops_heartbeating_is_lost(pool):
    import httpx

    root, env, url = pool
    admin = {"Authorization": f"Bearer {(root / 'data' / 'admin.token').read_text().strip()}"}
    report = {"uuid": "remote-npu-0", "driver": "npu", "vendor": "ExampleChip", "kind": "npu", "architecture": "x1",
              "memory_total": 1 << 30, "memory_free": 1 << 30, "compute_units": 8, "targets": ["reference"],
              "local_id": "npu:0"}
    beat = httpx.post(url + "/v1/nodes/heartbeat", json={"node": "remote-1", "devices": [report]}, headers=admin)
    assert beat.status_code == 200, beat.text
    states = {}
    for _ in range(100):  # the timeout is 2 s; the local node keeps beating
        states = {n["name"]: n["state"] for n in httpx.get(url + "/v1/nodes", headers=admin).json()}
        if states.get("remote-1") == "lost":
            break
        time.sleep(0.1)
    assert states["remote-1"] == "lost"
    assert [s for name, s in states.items() if name != "remote-1"] == ["up"]


@pytest.mark.skipif(not OPENCL, reason="no OpenCL device (pip install pocl-binary-distribution): a gang needs two devices")
def test_submit_a_gang_job_over_two_devices(pool, tmp_path):
    root, env, url = pool
    exe = hamr.compile(mlp_model(), targets=["cpu", "opencl"]).save(tmp_path / "mlp.hamr")
    x = np.random.default_rng(9).standard_normal((6, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run(env, "pool", "submit", exe, "--input", f"x={tmp_path / 'x.npy'}", "--devices", "2",
                 "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    index = json.loads((tmp_path / "out" / "outputs.json").read_text())
    np.testing.assert_allclose(np.load(tmp_path / "out" / index["y"]), mlp_reference(x), rtol=1e-4, atol=1e-5)
    job = json.loads(run(env, "pool", "jobs", "--json", "--explain").stdout)[-1]
    assert job["n_devices"] == 2 and len(job["placements"]) == 2
