"""Defence in depth: a tenant's job worker cannot read the pool's secrets or another tenant's files,
and no worker outlives its pool (docs/pool.md, "Sandboxed workers").

The attack runs inside the sandbox the pool builds for tenant alice: the same `contain()` call the
worker makes at start (hamr/pool/nodes/local/worker.py), in a process of its own, then tries to read what a
job that took over its worker would want. The pool's own workers are checked to run under it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hamr
from hamr.pool.nodes.local import sandbox
from tests.helpers import mlp_model, mlp_reference, npy, start_pool, stop, wait_until, workers_of

needs_landlock = pytest.mark.skipif(bool(sandbox.available()), reason=f"no sandbox here: {sandbox.available()}")
needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

PROBE = """
import json, sys
from pathlib import Path
from hamr.pool.nodes.local.worker import contain

contain(Path(sys.argv[1]), [Path(sys.argv[2])])


def read(path):
    try:
        with open(path, "rb") as f:
            f.read(1)
        return "read"
    except OSError as exc:
        return type(exc).__name__


def write(path):
    try:
        with open(path, "ab"):
            return "written"
    except OSError as exc:
        return type(exc).__name__


def listing(path):
    try:
        return "listed" if sorted(Path(path).iterdir()) is not None else ""
    except OSError as exc:
        return type(exc).__name__


print(json.dumps({"read": {p: read(p) for p in json.loads(sys.argv[3])},
                  "write": {p: write(p) for p in json.loads(sys.argv[4])},
                  "list": {p: listing(p) for p in json.loads(sys.argv[5])}}))
"""


def _run_job(tenant, exe_bytes: bytes, x: np.ndarray) -> dict:
    exe = tenant.client.post("/v1/executables", content=exe_bytes)
    assert exe.status_code in (200, 201), exe.text
    job = tenant.client.post("/v1/jobs", data={"executable_id": str(exe.json()["id"])}, files={"x": ("x.npy", npy(x))})
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    done = wait_until(f"{tenant.name}'s job", lambda: _terminal(tenant, job_id), 120)
    assert done["state"] == "succeeded", done
    return done


def _terminal(tenant, job_id: int) -> dict | None:
    job = tenant.client.get(f"/v1/jobs/{job_id}").json()
    return job if job["state"] in ("succeeded", "failed", "cancelled") else None


def _output(tenant, job_id: int) -> bytes:
    response = tenant.client.get(f"/v1/jobs/{job_id}/outputs/y")
    assert response.status_code == 200, response.text
    return response.content


def _blob(root: Path, data: bytes) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    path = root / "blobs" / "sha256" / digest[:2] / digest
    assert path.is_file(), f"the pool stores {len(data)} bytes as blob {digest}, not found under {root}"
    return path


def _tenant_dir(pool, tenant) -> Path:
    tenants = {t["name"]: t["id"] for t in pool.admin.get("/v1/tenants").json()}
    return pool.root / "runs" / socket.gethostname() / f"tenant-{tenants[tenant.name]}"


def _gone(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return True
    return "Z" in state.split()[1]  # a zombie runs nothing


@pytest.fixture(scope="module")
def mlp_bytes() -> bytes:
    return hamr.compile(mlp_model(), targets=["cpu"]).to_bytes()


@needs_landlock
def test_alices_worker_cannot_read_the_pools_secrets_or_bobs_files_and_her_job_succeeds(real_pool, mlp_bytes):
    pool = real_pool
    x_bob = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    bob_job = _run_job(pool.bob, mlp_bytes, x_bob)
    x_alice = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
    alice_job = _run_job(pool.alice, mlp_bytes, x_alice)
    y = np.load(io.BytesIO(_output(pool.alice, alice_job["id"])), allow_pickle=False)
    np.testing.assert_allclose(y, mlp_reference(x_alice), rtol=1e-4, atol=1e-5)

    alice_dir, bob_dir = _tenant_dir(pool, pool.alice), _tenant_dir(pool, pool.bob)
    (alice_exe,) = (alice_dir / "in" / "executables").iterdir()  # hers, linked in by the dispatcher
    secrets = [
        pool.root / "admin.token",
        pool.root / "default.token",
        pool.root / "pool.db",
        pool.root / "pool.json",
        _blob(pool.root, npy(x_bob)),
        _blob(pool.root, _output(pool.bob, bob_job["id"])),
        *(bob_dir / "in" / "executables").iterdir(),
    ]
    secrets += [p for p in (pool.root / "pool.db-wal", pool.root / "pool.db-shm") if p.exists()]
    assert all(p.is_file() for p in secrets)  # each exists, so a refusal below is the sandbox's
    writes = [pool.root / "planted", bob_dir / "cache" / "planted.so", alice_exe]
    listings = [pool.root, pool.root / "blobs", bob_dir]
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            str(alice_dir),
            str(pool.root),
            json.dumps([str(p) for p in [*secrets, alice_exe]]),
            json.dumps([str(p) for p in writes]),
            json.dumps([str(p) for p in listings]),
        ],
        capture_output=True,
        text=True,
        env=pool.env,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["read"] == {**{str(p): "PermissionError" for p in secrets}, str(alice_exe): "read"}
    assert seen["write"] == {str(p): "PermissionError" for p in writes}
    assert seen["list"] == {str(p): "PermissionError" for p in listings}
    assert not (pool.root / "planted").exists() and not (bob_dir / "cache" / "planted.so").exists()


@needs_landlock
def test_the_pools_workers_run_contained_to_their_tenant(real_pool, mlp_bytes):
    pool = real_pool
    _run_job(pool.alice, mlp_bytes, np.ones((2, 16), np.float32))
    workers = workers_of(pool.server.pid)
    assert workers, "the pool started no worker process"
    tenant_dirs = {str(_tenant_dir(pool, t)) for t in (pool.alice, pool.bob)}
    for pid in workers:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert args[args.index("--sandbox") + 1] in tenant_dirs, args
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert status["NoNewPrivs"].strip() == "1" and int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert (pool.root / "admin.token").read_bytes().strip() not in environ


@needs_linux
def test_a_worker_does_not_outlive_its_pool(tmp_path, mlp_bytes):
    root, env, server, url, admin_token, admin = start_pool(tmp_path)
    worker = None
    try:
        tenant = {"Authorization": f"Bearer {(root / 'default.token').read_text().strip()}"}
        exe = admin.post("/v1/executables", headers=tenant, content=mlp_bytes).json()["id"]

        def submit() -> int:
            job = admin.post(
                "/v1/jobs",
                headers=tenant,
                data={"executable_id": str(exe)},
                files={"x": ("x.npy", npy(np.ones((2, 16), np.float32)))},
            )
            assert job.status_code == 201, job.text
            return job.json()["id"]

        first = submit()
        wait_until("the first job", lambda: admin.get(f"/v1/jobs/{first}").json()["state"] == "succeeded", 120)
        (worker,) = workers_of(server.pid)
        os.kill(worker, signal.SIGSTOP)  # mid-job from here on, as a slow job is: it reads nothing more
        second = submit()
        wait_until("the second job to run", lambda: admin.get(f"/v1/jobs/{second}").json()["state"] == "running", 60)
        os.kill(server.pid, signal.SIGKILL)  # the pool alone, not its process group
        server.wait(timeout=30)
        deadline = time.monotonic() + 5
        while not _gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(worker), f"worker {worker} still runs after its pool was killed"
    finally:
        if worker is not None and not _gone(worker):
            os.kill(worker, signal.SIGKILL)
        admin.close()
        stop(server)
