"""`hamr pool submit` and the other client commands, as the README says: real `hamr` processes against a pool on
loopback (the module's pool is started in process, `cli_pool`; one test runs a real `hamr pool up` on PostgreSQL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

import hamr
from tests import postgres
from tests.helpers import hamr_cli, mlp_model, mlp_reference, one_error_line, start_pool, stop, wait_until, workers_of


def submit_mlp(env: dict, tmp_path, rows: int, targets: list[str], *options) -> str:
    """`hamr pool submit` of the MLP on `rows` random rows, checked against NumPy's answer; its stderr."""
    exe = hamr.compile(mlp_model(), targets=targets).save(tmp_path / "mlp.hamr")
    x = np.random.default_rng(rows).standard_normal((rows, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    result = hamr_cli(
        "pool", "submit", exe, "--input", f"x={tmp_path / 'x.npy'}", *options, "--output-dir", out, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    index = json.loads((out / "outputs.json").read_text())
    np.testing.assert_allclose(np.load(out / index["y"]), mlp_reference(x), rtol=1e-4, atol=1e-5)
    return result.stderr


def test_submit_runs_on_the_pool_and_writes_outputs_like_hamr_run(cli_pool, tmp_path):
    root, env, url = cli_pool
    assert "succeeded on" in submit_mlp(env, tmp_path, 3, ["cpu"])

    listed = hamr_cli("pool", "jobs", "--json", "--explain", env=env)
    assert listed.returncode == 0, listed.stderr
    job = json.loads(listed.stdout)[-1]
    assert job["state"] == "succeeded" and job["placements"][0]["reason"].startswith("max_throughput:")


def test_tenants_status_and_drain(cli_pool, tmp_path):
    root, env, url = cli_pool
    added = hamr_cli("pool", "tenant", "add", "acme", env=env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("hamr_")
    assert token not in (root / "pool.db").read_bytes().decode("latin-1")
    status = hamr_cli("pool", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    devices = json.loads(status.stdout)["devices"]
    assert "cpu" in {d["local_id"] for d in devices}
    # another tenant sees none of default's jobs
    theirs = hamr_cli("pool", "jobs", "--json", env={**env, "HAMR_TOKEN": token})
    assert theirs.returncode == 0 and json.loads(theirs.stdout) == []
    limits = hamr_cli(
        "pool",
        "tenant",
        "set",
        "acme",
        "--max-priority",
        "10",
        "--weight",
        "3",
        "--max-queued-jobs",
        "none",
        "--max-inflight-requests",
        "4",
        env=env,
    )
    assert limits.returncode == 0, limits.stderr
    shown = json.loads(limits.stdout)
    assert (shown["max_priority"], shown["weight"], shown["max_queued_jobs"], shown["max_inflight_requests"]) == (
        10,
        3,
        None,
        4,
    )
    assert "no tenant named 'nobody'" in one_error_line(
        hamr_cli("pool", "tenant", "set", "nobody", "--weight", "2", env=env)
    )
    assert "takes a number or 'none'" in one_error_line(
        hamr_cli("pool", "tenant", "set", "acme", "--max-queued-jobs", "lots", env=env)
    )
    drained = hamr_cli("pool", "drain", "cpu", env=env)
    assert drained.returncode == 0 and drained.stdout.startswith("drained cpu")
    assert hamr_cli("pool", "drain", "cpu", "--undo", env=env).returncode == 0


def test_client_errors_are_one_line(cli_pool, tmp_path):
    root, env, url = cli_pool
    message = one_error_line(hamr_cli("pool", "jobs", env={**env, "HAMR_TOKEN": "hamr_not-a-token"}))
    assert "(401)" in message
    message = one_error_line(hamr_cli("pool", "jobs", env={**env, "HAMR_POOL_DIR": str(tmp_path)}))
    assert "no pool found" in message
    message = one_error_line(hamr_cli("pool", "drain", "tpu:7", env=env))
    assert "names 0 devices" in message
    port = url.rsplit(":", 1)[
        1
    ]  # the running pool's: a second pool cannot take it, and says so before opening anything
    message = one_error_line(
        hamr_cli("pool", "up", "--port", port, env={**env, "HAMR_POOL_DIR": str(tmp_path / "second")})
    )
    assert message == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert not (tmp_path / "second" / "pool.json").exists()


def test_a_node_that_stops_heartbeating_is_lost(cli_pool):
    import httpx

    root, env, url = cli_pool
    admin = {"Authorization": f"Bearer {(root / 'admin.token').read_text().strip()}"}
    report = {
        "uuid": "remote-npu-0",
        "driver": "npu",
        "vendor": "ExampleChip",
        "kind": "npu",
        "architecture": "x1",
        "memory_total": 1 << 30,
        "memory_free": 1 << 30,
        "compute_units": 8,
        "targets": ["reference"],
        "local_id": "npu:0",
    }
    beat = httpx.post(url + "/v1/nodes/heartbeat", json={"node": "remote-1", "devices": [report]}, headers=admin)
    assert beat.status_code == 200, beat.text

    def states():
        return {n["name"]: n["state"] for n in httpx.get(url + "/v1/nodes", headers=admin).json()}

    now = wait_until(
        "remote-1 to be lost (heartbeat timeout 2 s)", lambda: (s := states()).get("remote-1") == "lost" and s, 30
    )
    assert [s for name, s in now.items() if name != "remote-1"] == ["up"]  # the local node keeps beating


@pytest.mark.opencl  # a gang needs two devices
def test_submit_a_gang_job_over_two_devices(cli_pool, tmp_path):
    root, env, url = cli_pool
    submit_mlp(env, tmp_path, 6, ["cpu", "opencl"], "--devices", "2")
    job = json.loads(hamr_cli("pool", "jobs", "--json", "--explain", env=env).stdout)[-1]
    assert job["n_devices"] == 2 and len(job["placements"]) == 2


@pytest.mark.postgres
def test_hamr_pool_up_on_postgresql_runs_a_job(postgres_url, tmp_path):
    """`hamr pool up` with its registry on PostgreSQL ($HAMR_POOL_DATABASE): a job submitted from the command line
    runs and gives NumPy's answer, and the job's row is in PostgreSQL, not in an SQLite file."""
    with postgres.schema(postgres_url) as url:
        database = url.render_as_string(hide_password=False)
        running = start_pool(tmp_path, env={"HAMR_POOL_DATABASE": database})
        try:
            submit_mlp(running.env, tmp_path, 2, ["cpu"])
            workers = workers_of(running.server.pid)
            assert workers, "the pool started no worker process"
            for pid in workers:  # the database's password never reaches a worker
                assert b"HAMR_POOL_DATABASE" not in Path(f"/proc/{pid}/environ").read_bytes()
        finally:
            running.admin.close()
            log = stop(running.server)
        assert "Traceback" not in log, log
        assert not (running.root / "pool.db").exists()
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                states = connection.execute(text("SELECT state FROM jobs")).scalars().all()
        finally:
            engine.dispose()
        assert states == ["succeeded"]


@pytest.mark.postgres
def test_a_data_directory_whose_tokens_another_database_issued_is_refused(postgres_url, tmp_path):
    """A data directory first used with SQLite (its token files) pointed at a PostgreSQL registry: one error line,
    and the token files are left as they were (the SQLite registry still knows them)."""
    root = tmp_path / "pool"
    root.mkdir()
    (root / "admin.token").write_text("hamr_issued-by-another-registry\n")
    with postgres.schema(postgres_url) as url:
        env = {**os.environ, "HAMR_POOL_DIR": str(root)}
        result = hamr_cli("pool", "up", "--port", "0", "--database", url.render_as_string(hide_password=False), env=env)
    assert result.returncode != 0
    assert "holds a token this registry did not issue" in one_error_line(result)
    assert (root / "admin.token").read_text() == "hamr_issued-by-another-registry\n"


@pytest.mark.parametrize(
    ("database", "reason"),
    [
        ("not a url", "database URL is not valid"),
        ("postgresql+psycopg://hamr:secret@127.0.0.1:port/none", "database URL is not valid"),
        (
            "postgresql+psycopg://hamr:secret@127.0.0.1:1/none",
            "cannot open the registry at postgresql+psycopg://hamr:***@",
        ),
    ],
)
def test_a_bad_database_is_one_error_line_without_the_password(database, reason, tmp_path):
    result = hamr_cli(
        "pool", "up", "--port", "0", "--database", database, env={**os.environ, "HAMR_POOL_DIR": str(tmp_path / "pool")}
    )
    assert result.returncode != 0
    message = one_error_line(result)
    assert reason in message and "secret" not in result.stdout + result.stderr
