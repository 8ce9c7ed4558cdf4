"""Remote node agents: `hamr agent` against `hamr pool up`, both real processes on loopback, and the
/v1/agents routes in process (hamr.pool.nodes.remote.server, hamr.pool.nodes.remote.agent; docs/pool.md, "Remote agents")."""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import signal
import socket
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import hamr
from hamr.errors import HamrError
from hamr.pool.dispatch.replicas import ReplicaGone
from hamr.pool.nodes.local import sandbox
from hamr.pool.nodes.remote import server_replicas as remote_replicas
from hamr.pool.nodes.remote.agent import Agent
from hamr.pool.nodes.remote.server import LOST_WORK_GRACE_S, RemoteNodes
from hamr.pool.registry import ANY_TENANT, ReplicaView, open_registry
from hamr.pool.service import create_app
from hamr.pool.wire import tensors
from tests.helpers import (
    BACKENDS,
    agent_args,
    bearer,
    finish,
    hamr_cli,
    infer_mlp,
    mlp_hamr,
    mlp_model,
    mlp_reference,
    npy,
    one_error_line,
    registry_for,
    report,
    spawn,
    start,
    start_pool,
    stop,
    wait_until,
)

# `hamr agent` whose every job first waits argv[1] seconds (a drill: a test kills it mid-job), patched in
# here: hamr itself has no such knob. Run as [sys.executable, "-c", HELD_AGENT, SECONDS, "agent", ...].
HELD_AGENT = """
import sys
from hamr.cli.app import main
from hamr.pool.nodes.remote.agent import DeviceRunner
hold_s, run = float(sys.argv.pop(1)), DeviceRunner.run
DeviceRunner.run = lambda self, item: (self.agent.stop.wait(hold_s), run(self, item))[1]
main()
"""


# -- end to end: two real processes ---------------------------------------------------


def test_a_remote_agent_runs_jobs_and_a_killed_agent_loses_none(tmp_path):
    root, env, server, url, admin_token, admin = start_pool(tmp_path)
    agent = None
    try:
        local_node = socket.gethostname()
        local = [d["uuid"] for d in admin.get("/v1/devices").json() if d["node"] == local_node]
        assert local

        # At once, to save time: the agent starts; one with a bad token, and one naming itself as the
        # server's node, each exit with one error line; the server's own devices are drained (the first
        # with `hamr pool drain`), so that the work must go to remote-1.
        agent_env = {**env, "HAMR_HOST_ID": "remote-1"}
        made = hamr_cli("pool", "agent-token", "remote-1", env=env)  # remote-1's agent gets a token for remote-1 only
        assert made.returncode == 0, made.stderr
        node_token = made.stdout.strip()
        assert admin.get("/v1/nodes", headers=bearer(node_token)).status_code == 403
        options = ("--heartbeat", "0.4", "--cache-dir", tmp_path / "agent")
        held = [sys.executable, "-c", HELD_AGENT, "5"]  # each job waits 5 s first
        agent = start(agent_env, *agent_args(url, node_token, "remote-1", *options), command=held)
        refused = spawn(env, *agent_args(url, "hamr_not-a-token", "remote-2"))
        clash = spawn(agent_env, *agent_args(url, admin_token, local_node))
        drain = spawn(env, "pool", "drain", local[0])
        for uuid in local[1:]:
            assert admin.post(f"/v1/devices/{uuid}/drain").status_code == 200
        assert "(401)" in one_error_line(finish(refused))
        assert "the pool server's own node" in one_error_line(finish(clash))
        drained = finish(drain)
        assert drained.returncode == 0 and drained.stdout.startswith("drained"), drained.stderr

        def remote_devices():
            nodes = {n["name"]: n["state"] for n in admin.get("/v1/nodes").json()}
            devices = [d for d in admin.get("/v1/devices").json() if d["node"] == "remote-1"]
            return devices if nodes.get("remote-1") == "up" and devices else None

        remote_cpu = wait_until("remote-1 to register", remote_devices, 60)[0]["uuid"]
        assert remote_cpu not in local

        exe = hamr.compile(mlp_model(), targets=["cpu"]).save(tmp_path / "mlp.hamr")
        x = np.random.default_rng(11).standard_normal((3, 16)).astype(np.float32)
        np.save(tmp_path / "x.npy", x)

        ran = hamr_cli(
            "pool", "submit", exe, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out1", env=env
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert f"succeeded on {remote_cpu} (attempt 1)" in ran.stderr
        index = json.loads((tmp_path / "out1" / "outputs.json").read_text())
        np.testing.assert_allclose(np.load(tmp_path / "out1" / index["y"]), mlp_reference(x), rtol=1e-4, atol=1e-5)
        first = admin.get("/v1/jobs").json()[-1]
        assert first["state"] == "succeeded" and first["attempts"] == 1
        assert 'hamr_jobs{state="succeeded"} 1.0' in httpx.get(url + "/metrics").text

        # Kill the agent (and its workers) while it holds a job: the node is lost, the job requeued, none lost.
        pending = start(
            env, "pool", "submit", exe, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out2"
        )
        job = wait_until("the second job to run on remote-1", lambda: _running(admin, first["id"]), 60)
        time.sleep(0.5)  # the agent takes it at once, then holds it for 5 s
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(timeout=10)
        wait_until("remote-1 to be lost", lambda: _node_state(admin, "remote-1") == "lost", 40)
        requeued = wait_until(
            "the job to be requeued", lambda: _state(admin, job) == "requeued" and _state(admin, job), 30
        )
        assert requeued == "requeued"  # the server's devices are still drained: it waits, nothing fails
        for uuid in local:
            assert admin.post(f"/v1/devices/{uuid}/undrain").status_code == 200
        out = pending.communicate(timeout=90)[0]
        assert pending.returncode == 0, out
        assert f"succeeded on {local[0]} (attempt 2)" in out
        index = json.loads((tmp_path / "out2" / "outputs.json").read_text())
        np.testing.assert_allclose(np.load(tmp_path / "out2" / index["y"]), mlp_reference(x), rtol=1e-4, atol=1e-5)
        placements = admin.get(f"/v1/jobs/{job}/placements").json()
        assert [(p["attempt"], p["device"]) for p in placements] == [(1, remote_cpu), (2, local[0])]
    finally:
        if agent is not None:
            stop(agent)
        log = stop(server)
    assert "Traceback" not in log, log


def test_deployment_replicas_on_a_remote_agent_serve_and_move_when_it_dies(tmp_path):
    root, env, server, url, admin_token, admin = start_pool(tmp_path)
    agent = None
    try:
        tenant = httpx.Client(base_url=url, headers=bearer((root / "default.token").read_text().strip()), timeout=30)
        node_token = admin.post("/v1/agents/remote-1/tokens").json()["token"]  # replicas load with it too
        agent = start(
            {**env, "HAMR_HOST_ID": "remote-1"},
            *agent_args(url, node_token, "remote-1", "--heartbeat", "0.4", "--cache-dir", tmp_path / "agent"),
        )
        exe = tenant.post("/v1/executables", content=hamr.compile(mlp_model(), targets=["cpu"]).to_bytes()).json()["id"]
        hosting = wait_until("remote-1 to host replicas", lambda: _node(admin, "remote-1").get("labels", {}), 60)
        assert hosting == {"hosts_replicas": True, "gangs": True, "sandbox": sandbox.describe()}

        deployment = tenant.post("/v1/deployments", json={"executable_id": exe, "replicas": 2}).json()["id"]

        def replica_nodes(ready: int):
            d = tenant.get(f"/v1/deployments/{deployment}").json()
            node_of = {dev["uuid"]: dev["node"] for dev in admin.get("/v1/devices").json()}
            return d["ready"] == ready and sorted(node_of[r["device"]] for r in d["replica_list"])

        local_node = socket.gethostname()
        assert wait_until("a ready replica on each node", lambda: replica_nodes(2), 60) == sorted(
            [local_node, "remote-1"]
        )

        def ask(seed: int) -> None:
            infer_mlp(tenant, deployment, seed)

        for seed in range(20):  # the service takes the nodes' hosts in turn: half of them go to remote-1
            ask(seed)
        remote_cpu = next(
            d["uuid"] for d in admin.get("/v1/devices").json() if d["node"] == "remote-1" and d["kind"] == "cpu"
        )
        wait_until("remote-1's cpu to have served", lambda: _busy_seconds(url, remote_cpu) > 0, 10)
        wrong = tenant.post(
            f"/v1/deployments/{deployment}/infer",
            content=tensors.encode({"x": np.zeros((2, 3), np.float32)}),
            headers={"Content-Type": tensors.MEDIA_TYPE},
        )
        assert wrong.status_code == 400 and "\n" not in wrong.json()["detail"]

        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(timeout=10)
        for seed in range(20, 30):  # answered by the local replica, the first after failing over
            ask(seed)
        wait_until("both replicas on the local node", lambda: replica_nodes(2) == [local_node, local_node], 60)
        assert _node(admin, "remote-1")["state"] == "lost"
        ask(99)
    finally:
        if agent is not None:
            stop(agent)
        log = stop(server)
    assert "Traceback" not in log, log


@pytest.mark.opencl
def test_a_remote_agent_runs_a_gang_job_across_its_cpu_and_opencl_devices(tmp_path):
    root, env, server, url, admin_token, admin = start_pool(tmp_path)
    agent = None
    try:
        local_node = socket.gethostname()
        for device in admin.get("/v1/devices").json():  # the gang must go to remote-1
            if device["node"] == local_node:
                assert admin.post(f"/v1/devices/{device['uuid']}/drain").status_code == 200
        agent = start(
            {**env, "HAMR_HOST_ID": "remote-1"},
            *agent_args(url, admin_token, "remote-1", "--heartbeat", "0.4", "--cache-dir", tmp_path / "agent"),
        )

        def remote_devices():
            devices = {d["local_id"]: d["uuid"] for d in admin.get("/v1/devices").json() if d["node"] == "remote-1"}
            return devices if {"cpu", "opencl:0"} <= set(devices) else None

        remote = wait_until("remote-1 to register its cpu and opencl:0", remote_devices, 60)
        exe = hamr.compile(mlp_model(), targets=["cpu", "opencl"]).save(tmp_path / "mlp.hamr")
        x = np.random.default_rng(12).standard_normal((5, 16)).astype(np.float32)  # splits 3 + 2
        np.save(tmp_path / "x.npy", x)

        ran = hamr_cli(
            "pool",
            "submit",
            exe,
            "--devices",
            2,
            "--input",
            f"x={tmp_path / 'x.npy'}",
            "--output-dir",
            tmp_path / "out",
            env=env,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "(attempt 1)" in ran.stderr
        index = json.loads((tmp_path / "out" / "outputs.json").read_text())
        y = np.load(tmp_path / "out" / index["y"])
        assert y.shape == (5, 24)
        np.testing.assert_allclose(y, mlp_reference(x), rtol=1e-4, atol=1e-5)
        job = admin.get("/v1/jobs").json()[-1]
        assert (job["state"], job["attempts"], job["n_devices"]) == ("succeeded", 1, 2)
        placements = admin.get(f"/v1/jobs/{job['id']}/placements").json()
        assert sorted((p["attempt"], p["device"]) for p in placements) == sorted(
            [(1, remote["cpu"]), (1, remote["opencl:0"])]
        )
    finally:
        if agent is not None:
            stop(agent)
        log = stop(server)
    assert "Traceback" not in log, log


def _busy_seconds(url: str, device: str) -> float:
    lines = [
        line
        for line in httpx.get(url + "/metrics").text.splitlines()
        if line.startswith("hamr_device_busy_seconds_total{") and f'device="{device}"' in line
    ]
    return float(lines[0].split()[-1]) if lines else 0.0


def _node(admin: httpx.Client, name: str) -> dict:
    return next((n for n in admin.get("/v1/nodes").json() if n["name"] == name), {})


def _running(admin: httpx.Client, after: int) -> int | None:
    jobs = [j for j in admin.get("/v1/jobs").json() if j["id"] > after and j["state"] == "running"]
    return jobs[0]["id"] if jobs else None


def _state(admin: httpx.Client, job: int) -> str:
    return admin.get(f"/v1/jobs/{job}").json()["state"]


def _node_state(admin: httpx.Client, name: str) -> str | None:
    return {n["name"]: n["state"] for n in admin.get("/v1/nodes").json()}.get(name)


def test_an_agent_that_cannot_reach_the_pool_at_start_is_one_error_line(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    line = one_error_line(
        hamr_cli(
            "agent",
            "--server",
            f"http://127.0.0.1:{port}",
            "--token",
            "hamr_x",
            "--start-timeout",
            "0.5",
            "--cache-dir",
            tmp_path,
            env=env,
        )
    )
    assert "cannot reach the pool" in line
    with pytest.raises(HamrError, match="not an http"):
        Agent("nowhere", "hamr_x", cache_dir=tmp_path)
    with pytest.raises(HamrError, match="is not valid"):
        Agent("http://127.0.0.1:1", "hamr_x", name="../etc", cache_dir=tmp_path)


# -- the routes, in process -----------------------------------------------------------


@pytest.fixture
def agents(request, tmp_path):
    """(registry, RemoteNodes, client, admin header, tenant header); the registry on SQLite, and on
    PostgreSQL too where a test is parametrised with BACKENDS."""
    with registry_for(request, tmp_path) as registry:
        remote = RemoteNodes(registry, "binpack", heartbeat_timeout_s=60)
        client = TestClient(create_app(registry, remote=remote), raise_server_exceptions=False)
        admin, _ = registry.create_token(None, admin=True)
        tenant = registry.create_tenant("t")
        token, _ = registry.create_token(tenant.id)
        yield registry, remote, client, bearer(admin), bearer(token)
        remote.close()


def _detail(response) -> str:
    body = response.json()
    assert set(body) == {"detail"} and "\n" not in body["detail"], body
    return body["detail"]


def _beat(client, admin, node="remote-x", devices=None, **extra):
    devices = devices if devices is not None else [report(f"{node}-cpu").to_json()]
    return client.post(f"/v1/agents/{node}/heartbeat", headers=admin, json={"devices": devices, **extra})


def _result(client, admin, job, attempt, node="remote-x", outputs=None, **fields):
    parts = [(k, (None, str(v))) for k, v in {"job": job, "attempt": attempt, **fields}.items()]
    parts += [(name, (f"{name}.npy", data, "application/octet-stream")) for name, data in (outputs or {}).items()]
    return client.post(f"/v1/agents/{node}/results", headers=admin, files=parts)


def _submit(client, tenant, exe_bytes: bytes, x, n_devices: int = 1) -> int:
    exe = client.post("/v1/executables", headers=tenant, content=exe_bytes).json()["id"]
    job = client.post(
        "/v1/jobs",
        headers=tenant,
        data={"executable_id": str(exe), "n_devices": str(n_devices)},
        files={"x": ("x.npy", npy(x))},
    )
    assert job.status_code == 201, job.text
    return job.json()["id"]


@pytest.fixture(scope="module")
def mlp_bytes() -> bytes:
    return mlp_hamr(("cpu",))


@pytest.mark.parametrize("agents", BACKENDS, indirect=True)
def test_work_goes_to_the_agent_and_its_result_is_recorded_once(agents, mlp_bytes):
    registry, remote, client, admin, tenant = agents
    assert _beat(client, admin, address="10.0.0.7", labels={"rack": "r1"}).status_code == 200
    node = registry.get_node("remote-x")
    assert (node.state, node.address, node.labels) == ("up", "10.0.0.7", {"rack": "r1"})
    assert client.post("/v1/agents/remote-x/work", headers=admin).json() == []

    x = np.arange(32, dtype=np.float32).reshape(2, 16) / 7
    job = _submit(client, tenant, mlp_bytes, x)
    remote.step()  # the remote node's Dispatcher places it on remote-x-cpu and sends it
    items = client.post("/v1/agents/remote-x/work", headers=admin, params={"wait": 5}).json()
    assert [(i["job"], i["attempt"], i["device"]) for i in items] == [(job, 1, "cpu")]
    item = items[0]
    downloaded = client.get(f"/v1/executables/{item['executable_id']}/file", headers=admin).content
    assert (
        downloaded == mlp_bytes
        and item["executable_sha256"] == registry.get_executable(ANY_TENANT, item["executable_id"]).sha256
    )
    feeds = {
        n: np.load(io.BytesIO(client.get(f"/v1/jobs/{job}/inputs/{n}", headers=admin).content)) for n in item["inputs"]
    }
    y = hamr.Session(downloaded, device="cpu").run(feeds)["y"]

    posted = _result(
        client, admin, job, 1, outputs={"y": npy(y)}, ok="true", latency_s=0.25, device="cpu", target="cpu"
    )
    assert posted.status_code == 200, posted.text
    assert posted.json() == {"job": job, "attempt": 1, "accepted": True}
    again = _result(client, admin, job, 1, outputs={"y": npy(y)}, ok="true", latency_s=0.25, device="cpu")
    assert again.status_code == 409 and "not recorded" in _detail(again)
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "succeeded"
    np.testing.assert_array_equal(registry.job_outputs(ANY_TENANT, job)["y"], y)
    assert not (registry.data_dir / "runs" / "remote-x" / f"job-{job}" / "attempt-1").exists()
    assert _result(client, admin, job, 1, ok="false", error="late").status_code == 409


def _taken_by_the_agent(agents, mlp_bytes) -> int:
    """A job submitted, placed on remote-x, and taken by its agent (one work item)."""
    registry, remote, client, admin, tenant = agents
    _beat(client, admin)
    job = _submit(client, tenant, mlp_bytes, np.zeros((1, 16), np.float32))
    remote.step()
    assert len(client.post("/v1/agents/remote-x/work", headers=admin).json()) == 1
    return job


@pytest.mark.parametrize("agents", BACKENDS, indirect=True)
def test_a_dead_worker_requeues_and_a_lost_node_requeues(agents, mlp_bytes):
    registry, remote, client, admin, tenant = agents
    job = _taken_by_the_agent(agents, mlp_bytes)
    assert _result(client, admin, job, 1, ok="false", died="exited with status -9").status_code == 200
    remote.step()
    job_row = registry.get_job(ANY_TENANT, job)
    assert job_row.state in ("requeued", "running")  # requeued, and placed again at once on the same healthy device
    remote.step()
    assert registry.get_job(ANY_TENANT, job).attempts == 2
    assert [i["attempt"] for i in client.post("/v1/agents/remote-x/work", headers=admin).json()] == [2]

    remote.heartbeat_timeout_s = 0.0  # no heartbeat since: lost
    time.sleep(0.01)
    remote.heartbeat()
    assert registry.get_node("remote-x").state == "lost"
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "requeued"
    assert _result(client, admin, job, 2, ok="false", error="too late").status_code == 409
    remote.heartbeat_timeout_s = 60.0
    assert _beat(client, admin).status_code == 200  # back: a fresh worker takes the job again
    remote.step()
    assert registry.get_node("remote-x").state == "up" and registry.get_job(ANY_TENANT, job).attempts == 3


def test_work_the_agent_no_longer_holds_is_requeued(agents, mlp_bytes):
    registry, remote, client, admin, tenant = agents
    job = _taken_by_the_agent(agents, mlp_bytes)
    assert _beat(client, admin, running=[]).status_code == 200  # within the grace: it may be on its way
    remote.step()
    assert registry.get_job(ANY_TENANT, job).attempts == 1
    remote.nodes["remote-x"].runs[(job, 1, 0)].delivered_at -= LOST_WORK_GRACE_S + 1  # as if taken long ago
    assert _beat(client, admin, running=[{"job": job, "attempt": 1}]).status_code == 200  # it still holds it
    remote.step()
    assert registry.get_job(ANY_TENANT, job).attempts == 1
    assert _beat(client, admin, running=[]).status_code == 200  # restarted: it holds nothing
    remote.step()  # requeued ...
    assert registry.get_job(ANY_TENANT, job).state == "requeued"
    remote.step()  # ... and placed again
    assert registry.get_job(ANY_TENANT, job).attempts == 2


def test_an_agent_token_serves_only_its_node_and_the_work_sent_to_it(agents, mlp_bytes):
    registry, remote, client, admin, tenant = agents
    assert client.post("/v1/agents/remote-x/tokens", headers=tenant).status_code == 403
    created = client.post("/v1/agents/remote-x/tokens", headers=admin)
    assert created.status_code == 201 and created.json()["node"] == "remote-x"
    mine = bearer(created.json()["token"])
    assert _beat(client, mine).status_code == 200  # its own node's routes
    other = _beat(client, mine, node="remote-y")
    assert (
        other.status_code == 403 and _detail(other) == "this is the agent token of node remote-x, not of node remote-y"
    )
    for method, path in [
        ("GET", "/v1/nodes"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/devices"),
        ("GET", "/v1/tenants"),
        ("GET", "/v1/deployments"),
        ("POST", "/v1/agents/remote-x/tokens"),
    ]:
        refused = client.request(method, path, headers=mine)
        assert refused.status_code == 403, (method, path, refused.text)
        assert "agent token of node remote-x" in _detail(refused)
    x = np.random.default_rng(4).standard_normal((1, 16)).astype(np.float32)
    sent = _submit(client, tenant, mlp_bytes, x)
    exe = registry.get_job(ANY_TENANT, sent).executable_id
    before = client.get(f"/v1/jobs/{sent}/inputs/x", headers=mine)
    assert before.status_code == 404 and _detail(before) == f"job {sent} not found"  # not sent to remote-x yet
    assert client.get(f"/v1/executables/{exe}/file", headers=mine).status_code == 404
    remote.step()
    (item,) = client.post("/v1/agents/remote-x/work", headers=mine).json()
    assert item["job"] == sent
    np.testing.assert_array_equal(np.load(io.BytesIO(client.get(f"/v1/jobs/{sent}/inputs/x", headers=mine).content)), x)
    assert client.get(f"/v1/executables/{exe}/file", headers=mine).content == mlp_bytes
    kept = _submit(client, tenant, mlp_bytes, x)  # queued behind the first: not sent anywhere
    assert client.get(f"/v1/jobs/{kept}/inputs/x", headers=mine).status_code == 404
    assert _result(client, mine, sent, 1, ok="false", error="no").status_code == 200
    remote.step()
    assert registry.get_job(ANY_TENANT, sent).state == "failed"
    assert client.get(f"/v1/jobs/{sent}/inputs/x", headers=mine).status_code == 404  # its work is over


def _gang_node(client, admin, **extra):
    """remote-x with two cpu devices (local ids cpu and cpu1), so that a gang of 2 fits on it."""
    devices = [report("remote-x-cpu").to_json(), report("remote-x-cpu1", local_id="cpu1").to_json()]
    return _beat(client, admin, devices=devices, **extra)


def test_gang_shards_go_to_the_agent_as_items_of_their_own_and_join_once(agents, mlp_bytes):
    from hamr.pool.dispatch.gangs import split_inputs

    registry, remote, client, admin, tenant = agents
    assert _gang_node(client, admin, labels={"gangs": True}).status_code == 200
    x = np.random.default_rng(13).standard_normal((5, 16)).astype(np.float32)
    job = _submit(client, tenant, mlp_bytes, x, n_devices=2)
    remote.step()
    items = sorted(client.post("/v1/agents/remote-x/work", headers=admin).json(), key=lambda i: i["shard"])
    assert [(i["job"], i["attempt"], i["shard"], i["shards"]) for i in items] == [(job, 1, 0, 2), (job, 1, 1, 2)]
    assert sorted(i["device"] for i in items) == ["cpu", "cpu1"]
    assert items[0]["inputs"] == items[1]["inputs"]  # each shard downloads the whole inputs and splits them

    for assignment in remote.nodes["remote-x"].runs.values():
        assignment.delivered_at -= LOST_WORK_GRACE_S + 1  # as if taken long ago: only what the agent lists lives
    running = [{"job": job, "attempt": 1, "shard": 0}, {"job": job, "attempt": 1, "shard": 1}]
    assert _gang_node(client, admin, labels={"gangs": True}, running=running).status_code == 200
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "running"

    feeds = {
        n: np.load(io.BytesIO(client.get(f"/v1/jobs/{job}/inputs/{n}", headers=admin).content))
        for n in items[0]["inputs"]
    }
    session = hamr.Session(mlp_bytes, device="cpu")
    ys = [session.run(shard)["y"] for shard in split_inputs(feeds, 2)]
    assert [len(y) for y in ys] == [3, 2]

    def post(shard: int, y):
        return _result(
            client, admin, job, 1, outputs={"y": npy(y)}, ok="true", latency_s=0.1, device="cpu", shard=shard
        )

    assert post(1, ys[1]).status_code == 200
    assert post(1, ys[1]).status_code == 409  # posted already
    unknown = post(2, ys[1])
    assert unknown.status_code == 409 and "shard 2" in _detail(unknown)
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "running"  # shard 0 is not in yet
    assert post(0, ys[0]).status_code == 200
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "succeeded"
    np.testing.assert_allclose(registry.job_outputs(ANY_TENANT, job)["y"], mlp_reference(x), rtol=1e-4, atol=1e-5)
    assert remote.nodes["remote-x"].runs == {}


def test_a_gang_on_a_lost_node_is_requeued_as_a_whole_and_its_late_shard_is_refused(agents, mlp_bytes):
    registry, remote, client, admin, tenant = agents
    _gang_node(client, admin, labels={"gangs": True})
    x = np.ones((4, 16), np.float32)
    job = _submit(client, tenant, mlp_bytes, x, n_devices=2)
    remote.step()
    assert len(client.post("/v1/agents/remote-x/work", headers=admin).json()) == 2
    y0 = mlp_reference(x[:2])
    assert _result(client, admin, job, 1, outputs={"y": npy(y0)}, ok="true", latency_s=0.1, shard=0).status_code == 200

    remote.heartbeat_timeout_s = 0.0  # no heartbeat since: lost, with shard 1 still out
    time.sleep(0.01)
    remote.heartbeat()
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "requeued"
    assert len([e for e in registry.list_events(ANY_TENANT, kind="job.requeued") if e.subject == f"job:{job}"]) == 1
    late = _result(client, admin, job, 1, outputs={"y": npy(y0)}, ok="true", latency_s=0.1, shard=1)
    assert late.status_code == 409 and "shard 1" in _detail(late)

    remote.heartbeat_timeout_s = 60.0
    _gang_node(client, admin, labels={"gangs": True})  # back: the whole attempt runs again, both shards
    remote.step()
    items = client.post("/v1/agents/remote-x/work", headers=admin).json()
    assert sorted((i["attempt"], i["shard"]) for i in items) == [(2, 0), (2, 1)]


def test_a_node_whose_agent_sends_no_gangs_label_leaves_gang_jobs_waiting(agents, mlp_bytes):
    registry, remote, client, admin, tenant = agents
    waits = "waiting: this node's agent runs no gang jobs (several devices at once)"
    assert _gang_node(client, admin, labels={"hosts_replicas": True}).status_code == 200  # an agent before gangs
    job = _submit(client, tenant, mlp_bytes, np.zeros((4, 16), np.float32), n_devices=2)
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "queued"
    assert remote.dispatchers["remote-x"].reasons[job] == waits
    assert client.post("/v1/agents/remote-x/work", headers=admin).json() == []

    assert _gang_node(client, admin, labels={"gangs": True}).status_code == 200
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "running"
    assert _gang_node(client, admin, labels={}).status_code == 200  # restarted as an older agent before it polled
    assert client.post("/v1/agents/remote-x/work", headers=admin).json() == []  # it gets no shard of it
    remote.step()
    assert registry.get_job(ANY_TENANT, job).state == "requeued"
    (requeued,) = [e for e in registry.list_events(ANY_TENANT, kind="job.requeued") if e.subject == f"job:{job}"]
    assert "no longer runs gang jobs" in requeued.payload["reason"]
    remote.step()
    assert remote.dispatchers["remote-x"].reasons[job] == waits


def test_a_long_poll_returns_when_work_arrives(agents, mlp_bytes):
    registry, remote, client, admin, tenant = agents
    _beat(client, admin)
    job = _submit(client, tenant, mlp_bytes, np.zeros((1, 16), np.float32))
    timer = threading.Timer(0.3, remote.step)
    timer.start()
    begun = time.monotonic()
    items = client.post("/v1/agents/remote-x/work", headers=admin, params={"wait": 20}).json()
    assert [i["job"] for i in items] == [job] and time.monotonic() - begun < 10
    timer.join()


def test_bad_agent_requests_are_one_line_client_errors(agents, mlp_bytes):
    registry, remote, client, admin, tenant = agents
    assert _beat(client, tenant).status_code == 403
    assert client.post("/v1/agents/remote-x/work", headers=tenant).status_code == 403
    assert client.post("/v1/agents/remote-x/heartbeat", json={"devices": []}).status_code == 401
    unknown = client.post("/v1/agents/remote-q/work", headers=admin)
    assert unknown.status_code == 404 and "heartbeat first" in _detail(unknown)
    assert _result(client, admin, 1, 1, node="remote-q", ok="true").status_code == 404
    assert _beat(client, admin, node="..").status_code in (404, 422)
    assert _beat(client, admin, node="a%2Fb").status_code in (404, 422)
    assert client.post("/v1/agents/remote-x/work", headers=admin, params={"wait": 31}).status_code == 422
    assert client.post("/v1/agents/remote-x/work", headers=admin, params={"wait": "nan"}).status_code == 422

    taken = registry.heartbeat("other", [report("shared-cpu")])
    assert taken.state == "up"
    clash = _beat(client, admin, devices=[report("shared-cpu").to_json()])
    assert clash.status_code == 409 and "HAMR_HOST_ID" in _detail(clash)
    assert _beat(client, admin).status_code == 200
    job = _submit(client, tenant, mlp_bytes, np.zeros((1, 16), np.float32))
    remote.step()
    client.post("/v1/agents/remote-x/work", headers=admin)

    cases = [
        ({"content": b"junk", "headers": {"Content-Type": "application/json"}}, 400),
        (
            {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
            400,
        ),  # cut short
        ({"files": [("job", (None, str(job))), ("attempt", (None, "1")), ("ok", (None, "maybe"))]}, 422),
        ({"files": [("job", (None, "x")), ("attempt", (None, "1")), ("ok", (None, "true"))]}, 422),
        ({"files": [("job", (None, str(job))), ("attempt", (None, "1")), ("ok", (None, "true"))]}, 422),  # no latency
        (
            {
                "files": [
                    ("job", (None, str(job))),
                    ("attempt", (None, "1")),
                    ("ok", (None, "true")),
                    ("latency_s", (None, "inf")),
                ]
            },
            422,
        ),
        (
            {
                "files": [
                    ("job", (None, str(job))),
                    ("attempt", (None, "1")),
                    ("ok", (None, "true")),
                    ("latency_s", (None, "0.1")),
                    ("y", ("y.npy", b"\x93NUMPY junk")),
                ]
            },
            400,
        ),
        (
            {
                "files": [
                    ("job", (None, str(job))),
                    ("attempt", (None, "1")),
                    ("ok", (None, "false")),
                    ("y", ("y.npy", npy([1.0]))),
                ]
            },
            422,
        ),
        ({"files": [("job", (None, str(job))), ("job", (None, str(job)))]}, 400),
        ({"files": [("job", ("job.npy", npy([1])))]}, 400),
        ({"files": [("bogus", (None, "1"))]}, 400),
        ({"files": [("job", (None, str(job))), ("attempt", (None, "7")), ("ok", (None, "false"))]}, 409),
    ]
    for kwargs, status in cases:
        response = client.post("/v1/agents/remote-x/results", headers=admin | kwargs.pop("headers", {}), **kwargs)
        assert response.status_code == status, (kwargs, response.text)
        _detail(response)
    assert registry.get_job(ANY_TENANT, job).state == "running"  # none of it touched the job


def test_replica_requests_go_to_the_agent_and_come_back_as_outputs_errors_or_gone(agents, mlp_bytes, monkeypatch):
    registry, remote, client, admin, tenant = agents
    monkeypatch.setattr(remote_replicas, "SILENT_AGENT_S", 60.0)  # no agent polls here but the test's own calls
    _beat(client, admin)
    node = remote.nodes["remote-x"]
    exe = client.post("/v1/executables", headers=tenant, content=mlp_bytes).json()["id"]
    view = ReplicaView(7, 1, 1, exe, "pending", "", "remote-x-cpu", "cpu", "remote-x", "cpu", "x86_64", 500)
    x = np.ones((2, 16), np.float32)
    tensors_body = {"headers": {"Content-Type": tensors.MEDIA_TYPE}}

    def answer(request_id: int, **kwargs):
        return client.post(
            f"/v1/agents/remote-x/requests/{request_id}", headers=admin | kwargs.pop("headers", {}), **kwargs
        )

    def taken() -> dict:
        items = client.post("/v1/agents/remote-x/work", headers=admin, params={"wait": 5}).json()
        assert len(items) == 1, items
        return items[0]

    threads = concurrent.futures.ThreadPoolExecutor(2)
    try:
        loading = threads.submit(node.open_replica, view)
        load = taken()
        assert {k: load[k] for k in ("kind", "replica", "device", "executable_id")} == {
            "kind": "load",
            "replica": 7,
            "device": "cpu",
            "executable_id": exe,
        }
        assert load["executable_sha256"] == registry.get_executable(ANY_TENANT, exe).sha256
        assert client.get(f"/v1/agents/remote-x/requests/{load['request']}", headers=admin).status_code == 409
        assert answer(load["request"], content=tensors.encode({"y": x}), **tensors_body).status_code == 422
        assert answer(load["request"], json={"target": "cpu"}).status_code == 204
        session = loading.result(timeout=10)
        assert session.target == "cpu"
        assert answer(load["request"], json={"target": "cpu"}).status_code == 409  # answered already

        running = threads.submit(session.run, {"x": x})
        infer = taken()
        assert infer["kind"] == "infer" and infer["replica"] == 7
        inputs = client.get(f"/v1/agents/remote-x/requests/{infer['request']}", headers=admin)
        assert inputs.headers["content-type"] == tensors.MEDIA_TYPE
        np.testing.assert_array_equal(tensors.decode(inputs.content)["x"], x)
        for bad, status in [
            ({"json": {"target": "cpu"}}, 422),
            ({"json": {}}, 422),
            ({"json": {"error": ""}}, 422),
            ({"json": {"error": "x", "more": 1}}, 422),
            ({"content": b"{"}, 422),
            ({"content": b"junk", **tensors_body}, 400),
            ({"content": b"hi", "headers": {"Content-Type": "text/plain"}}, 415),
        ]:
            response = answer(infer["request"], **({"headers": {"Content-Type": "application/json"}} | bad))
            assert response.status_code == status, (bad, response.text)
            _detail(response)
        y = np.full((2, 24), 2, np.float32)  # the model's output: float32[batch, 24]
        assert answer(infer["request"], content=tensors.encode({"y": y}), **tensors_body).status_code == 204
        np.testing.assert_array_equal(running.result(timeout=10)["y"], y)

        running = threads.submit(session.run, {"x": x})
        wrong = answer(taken()["request"], content=tensors.encode({"y": x}), **tensors_body)
        assert wrong.status_code == 422 and "output 'y' is float32[2, 16]" in _detail(wrong)
        with pytest.raises(HamrError, match="outputs the model does not give"):  # the request fails with that line
            running.result(timeout=10)

        running = threads.submit(session.run, {"x": x})
        assert answer(taken()["request"], json={"error": "input 'x' has shape [2, 3]"}).status_code == 204
        with pytest.raises(HamrError, match=r"shape \[2, 3\]") as failed:
            running.result(timeout=10)
        assert not isinstance(failed.value, ReplicaGone)  # the infer route's 400

        running = threads.submit(session.run, {"x": x})
        gone = taken()["request"]
        node.lose("no heartbeat")
        with pytest.raises(ReplicaGone, match="no heartbeat"):  # the request goes to another replica
            running.result(timeout=10)
        assert answer(gone, json={"error": "late"}).status_code == 409
        with pytest.raises(ReplicaGone):
            session.run({"x": x})

        _beat(client, admin)  # back; an agent that does not poll is gone after SILENT_AGENT_S
        monkeypatch.setattr(remote_replicas, "SILENT_AGENT_S", 0.0)
        with pytest.raises(ReplicaGone, match="has not polled"):
            node.open_replica(view)
        assert node.outbox == [] and node.requests.waiting == {}
    finally:
        node.lose("the test is over")  # a failed check leaves no request waiting
        threads.shutdown(wait=True)


def test_without_remote_agents_the_routes_answer_503(tmp_path):
    with open_registry(data_dir=tmp_path) as registry:
        client = TestClient(create_app(registry), raise_server_exceptions=False)
        admin, _ = registry.create_token(None, admin=True)
        for path in ("/v1/agents/n/heartbeat", "/v1/agents/n/work", "/v1/agents/n/results"):
            response = client.post(path, headers=bearer(admin), json={"devices": []})
            assert response.status_code == 503 and "takes no remote agents" in _detail(response)
