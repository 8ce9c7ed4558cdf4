"""The pool across machines on a real two-node Ray cluster on this machine (loopback addresses):
an agent actor per Ray node registers its devices, a job runs on the node owning its device, and
a killed agent's job is requeued and succeeds on the other node."""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'hamr[ray]')")

import hamr  # noqa: E402
from hamr.pool.nodes.ray.cluster import RayPool, node_name  # noqa: E402
from hamr.pool.registry import ANY_TENANT, open_registry  # noqa: E402
from tests.helpers import infer_mlp, mlp_hamr, mlp_model, mlp_reference  # noqa: E402

pytestmark = pytest.mark.ray

TOL = {"rtol": 1e-4, "atol": 1e-5}


def _addresses() -> tuple[str, str, int]:
    """(head ip, worker ip, port base): 127.0.0.2 and .3, another pair per pytest-xdist worker (gw1: .4, .5)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    n = int(worker[2:]) if worker[2:].isdigit() else 0
    return f"127.0.0.{2 + 2 * n}", f"127.0.0.{3 + 2 * n}", 21000 + 2000 * n


def _free_port(ip: str, start: int) -> int:
    for port in range(start, start + 500):
        with socket.socket() as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {ip} from {start}")


def _ray_start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`ray start --block ...` in a process group of its own: the fixture kills that group, and so
    only the Ray processes it started (a `ray stop` would stop every Ray node of this machine)."""
    ray_bin = Path(sys.executable).with_name("ray")
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(ray_bin) if ray_bin.exists() else "ray", "start", "--block", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_port(ip: str, port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex((ip, port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the Ray head did not listen on {ip}:{port} within {timeout} s:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.2)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + wait  # the group's other processes (raylet, workers) may outlive ray start
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _reload_auth() -> None:
    """Ray reads RAY_AUTH_* into its config and token cache once per process (at import); this
    process set them after importing ray, so it has them read again (Ray's own test helper)."""
    try:
        from ray._private.authentication_test_utils import reset_auth_token_state
    except ImportError:  # a Ray without token auth
        return
    reset_auth_token_state()


@pytest.fixture(scope="module")
def cluster():
    """A head node (127.0.0.2) and a worker node (127.0.0.3), token auth on; this process is the Ray driver."""
    head_ip, worker_ip, base = _addresses()
    temp = Path(tempfile.mkdtemp(prefix="hamr-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    _reload_auth()
    common = ["--num-cpus", "1", "--object-store-memory", str(80 * 1024 * 1024), "--disable-usage-stats"]
    port = _free_port(head_ip, base)
    env = {**os.environ, "HAMR_HOST_ID": f"ray-test-head-{head_ip}"}  # two nodes on one host: distinct device uuids
    procs: list[subprocess.Popen] = []
    try:
        log = temp / "head.log"
        procs.append(
            _ray_start(
                [
                    "--head",
                    "--node-ip-address",
                    head_ip,
                    "--port",
                    str(port),
                    "--include-dashboard=false",
                    "--temp-dir",
                    str(temp / "ray"),
                    "--min-worker-port",
                    str(base + 1000),
                    "--max-worker-port",
                    str(base + 1400),
                    *common,
                ],
                env,
                log,
            )
        )
        _wait_port(head_ip, port, procs[0], log)
        log = temp / "worker.log"
        procs.append(
            _ray_start(
                [
                    "--address",
                    f"{head_ip}:{port}",
                    "--node-ip-address",
                    worker_ip,
                    "--min-worker-port",
                    str(base + 1500),
                    "--max-worker-port",
                    str(base + 1900),
                    *common,
                ],
                {**env, "HAMR_HOST_ID": f"ray-test-worker-{worker_ip}"},
                log,
            )
        )
        ray.init(address=f"{head_ip}:{port}", _node_ip_address=head_ip, log_to_driver=False)
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if time.monotonic() > deadline or procs[1].poll() is not None:
                raise RuntimeError(f"the worker node did not join:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"head": head_ip, "worker": worker_ip, "port": port}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(procs):
            _kill_group(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reload_auth()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def exe_bytes():
    """The MLP with a cpu variant only: each Ray node has one cpu, so that jobs and replicas spread over the nodes."""
    return mlp_hamr(("cpu",))


@pytest.fixture
def pool(cluster, tmp_path, exe_bytes, request):
    """(RayPool, registry, tenant id, executable record); the pool's agents are killed after the test."""
    hold_s = getattr(request, "param", 0.0)  # each agent sleeps this long before a run
    with open_registry(data_dir=tmp_path / "pool") as registry:
        tenant = registry.create_tenant("acme").id
        exe = registry.upload_executable(tenant, exe_bytes)
        ray_pool = RayPool(registry, before_run=functools.partial(time.sleep, hold_s) if hold_s else None)
        try:
            ray_pool.refresh()
            yield ray_pool, registry, tenant, exe
        finally:
            ray_pool.close()


def submit(registry, tenant, exe, seed):
    x = np.random.default_rng(seed).standard_normal((3, 16)).astype(np.float32)
    return registry.submit_job(tenant, exe.id, {"x": x}), x


def node_of_placement(registry, job_id, attempt=None):
    placements = registry.list_placements(ANY_TENANT, job_id)
    placement = placements[-1] if attempt is None else next(p for p in placements if p.attempt == attempt)
    device = next(d for d in registry.list_devices() if d.id == placement.device_id)
    return next(n.name for n in registry.list_nodes() if n.id == device.node_id)


def test_an_agent_per_ray_node_registers_its_devices(pool, cluster):
    ray_pool, registry, _, _ = pool
    alive = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    assert len(alive) == 2 and set(ray_pool.nodes) == set(alive)
    wheres = {node_id: node.where for node_id, node in ray_pool.nodes.items()}
    assert {w["node_id"] for w in wheres.values()} == set(alive)  # each agent runs on its own node
    assert {w["ip"] for w in wheres.values()} == {cluster["head"], cluster["worker"]}
    for node_id in alive:
        node = registry.get_node(node_name(node_id))
        assert node is not None and node.state == "up" and node.address == alive[node_id]
        devices = registry.list_devices(node=node_name(node_id))
        assert "cpu" in {d.local_id for d in devices}
    uuids = [d.uuid for d in registry.list_devices()]
    assert len(uuids) == len(set(uuids)) >= 2


def test_jobs_run_on_the_node_owning_their_device(pool):
    ray_pool, registry, tenant, exe = pool
    jobs = [submit(registry, tenant, exe, seed) for seed in (1, 2, 3, 4)]
    ray_pool.run_until_idle(60)
    ran_on = set()
    for job, x in jobs:
        record = registry.get_job(tenant, job.id)
        assert record.state == "succeeded", record.error
        np.testing.assert_allclose(registry.job_outputs(tenant, job.id)["y"], mlp_reference(x), **TOL)
        where = ray_pool.ran[(job.id, record.attempts)]
        owner = node_of_placement(registry, job.id, record.attempts)
        assert owner == node_name(where["node_id"])  # the Ray worker that ran it is on the device's node
        assert where["ip"] == ray_pool.nodes[where["node_id"]].where["ip"]
        ran_on.add(where["node_id"])
    assert ran_on == set(ray_pool.nodes), "4 jobs, 2 nodes with a free cpu each: both nodes run some"
    # both nodes take work: one job per node's cpu at once
    first = [submit(registry, tenant, exe, seed) for seed in (5, 6)]
    ray_pool.step()
    busy = {node_id for node_id, d in ray_pool.dispatchers.items() if d.busy()}
    ray_pool.run_until_idle(60)
    assert busy == set(ray_pool.nodes), "two jobs, two nodes with a free cpu: each node runs one"
    assert {ray_pool.ran[(j.id, 1)]["node_id"] for j, _ in first} == set(ray_pool.nodes)


@pytest.mark.parametrize("pool", [1.5], indirect=True)  # each run holds 1.5 s: time to kill its agent mid-job
def test_a_killed_agent_requeues_its_job_to_the_other_node(pool):
    ray_pool, registry, tenant, exe = pool
    job, x = submit(registry, tenant, exe, 7)
    deadline = time.monotonic() + 30
    while not any(d.busy() for d in ray_pool.dispatchers.values()):
        assert time.monotonic() < deadline, "the job was not placed"
        ray_pool.step()
    (victim,) = [node_id for node_id, d in ray_pool.dispatchers.items() if d.busy()]
    assert registry.get_job(tenant, job.id).state == "running"
    ray.kill(ray_pool.actor(victim))
    ray_pool.run_until_idle(60)
    record = registry.get_job(tenant, job.id)
    assert record.state == "succeeded", record.error
    assert record.attempts >= 2
    np.testing.assert_allclose(registry.job_outputs(tenant, job.id)["y"], mlp_reference(x), **TOL)
    assert node_of_placement(registry, job.id, 1) == node_name(victim)
    assert node_of_placement(registry, job.id) != node_name(victim)
    assert ray_pool.ran[(job.id, record.attempts)]["node_id"] != victim
    requeued = [e for e in registry.list_events(ANY_TENANT, kind="job.requeued") if e.subject == f"job:{job.id}"]
    assert requeued and "worker died" in str(requeued[0].payload)
    assert all(d.health == "missing" for d in registry.list_devices(node=node_name(victim)))
    # refresh() starts a new agent there, and the node's devices come back
    assert ray_pool.refresh() == [node_name(victim)]
    assert any(d.health != "missing" for d in registry.list_devices(node=node_name(victim)))


def gang_on_cpu_and_opencl(registry, tenant, seed):
    """A 2-device gang job of an executable with cpu and opencl variants: one node's cpu and opencl:0."""
    exe = registry.upload_executable(tenant, hamr.compile(mlp_model(), targets=["cpu", "opencl"]).to_bytes())
    x = np.random.default_rng(seed).standard_normal((5, 16)).astype(np.float32)
    return registry.submit_job(tenant, exe.id, {"x": x}, n_devices=2), x


def gang_placements(registry, job_id, attempt):
    """(node, device) of each of the attempt's placements."""
    devices = {d.id: d for d in registry.list_devices()}
    nodes = {n.id: n.name for n in registry.list_nodes()}
    return sorted(
        (nodes[devices[p.device_id].node_id], devices[p.device_id].local_id)
        for p in registry.list_placements(ANY_TENANT, job_id)
        if p.attempt == attempt
    )


@pytest.mark.opencl
@pytest.mark.parametrize("pool", [1.5], indirect=True)  # each shard holds 1.5 s: time to kill its agent mid-gang
def test_a_gang_job_splits_over_one_ray_nodes_devices_and_moves_whole_when_its_agent_dies(pool):
    ray_pool, registry, tenant, _ = pool
    job, x = gang_on_cpu_and_opencl(registry, tenant, 31)
    deadline = time.monotonic() + 60
    while registry.get_job(tenant, job.id).state != "running":
        assert time.monotonic() < deadline, registry.get_job(tenant, job.id)
        ray_pool.step()
    (victim,) = [node_id for node_id, d in ray_pool.dispatchers.items() if d.busy()]
    assert gang_placements(registry, job.id, 1) == [(node_name(victim), "cpu"), (node_name(victim), "opencl:0")]
    ray.kill(ray_pool.actor(victim))
    ray_pool.run_until_idle(120)
    record = registry.get_job(tenant, job.id)
    assert record.state == "succeeded", record.error
    (survivor,) = [n for n in ray_pool.nodes if n != victim]
    assert gang_placements(registry, job.id, record.attempts) == [
        (node_name(survivor), "cpu"),
        (node_name(survivor), "opencl:0"),
    ]
    y = registry.job_outputs(tenant, job.id)["y"]
    assert y.shape == (5, 24)
    np.testing.assert_allclose(y, mlp_reference(x), **TOL)  # rows 0-2 from one device, 3-4 from the other
    assert ray_pool.ran[(job.id, record.attempts)]["node_id"] == survivor


def test_deployment_replicas_spread_over_both_nodes_and_move_when_an_agent_dies(pool):
    import threading

    from fastapi.testclient import TestClient

    from hamr.pool.control.deployments import Reconciler
    from hamr.pool.service import create_app

    ray_pool, registry, tenant, exe = pool
    token, _ = registry.create_token(tenant)
    client = TestClient(
        create_app(registry, replica_hosts=ray_pool.replica_hosts), headers={"Authorization": f"Bearer {token}"}
    )
    stop = threading.Event()
    reconciler = Reconciler(registry)

    def loop():  # as hamr pool up's loop runs it, less refresh(), which would start a new agent on the victim
        heartbeat_at = time.monotonic()
        while not stop.is_set():
            reconciler.step()
            ray_pool.step()
            if time.monotonic() - heartbeat_at > 1.0:  # how a dead agent is found when no request goes to it
                ray_pool.heartbeat()
                heartbeat_at = time.monotonic()
            time.sleep(0.05)

    def deployment():
        return client.get(f"/v1/deployments/{deployment_id}").json()

    def wait_until(check, timeout=90.0):
        deadline = time.monotonic() + timeout
        while not check(d := deployment()):
            assert time.monotonic() < deadline, d
            time.sleep(0.1)
        return d

    def ask(seed):
        infer_mlp(client, deployment_id, seed)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        deployment_id = client.post("/v1/deployments", json={"executable_id": exe.id, "replicas": 2}).json()["id"]
        wait_until(lambda d: d["ready"] == 2)
        nodes = {r.node for r in registry.list_replicas(ANY_TENANT, deployment_id)}
        assert nodes == {node_name(n) for n in ray_pool.nodes}  # one replica per node: spread across nodes
        for seed in range(6):
            ask(seed)
        victim = next(iter(ray_pool.nodes))
        ray.kill(ray_pool.actor(victim))
        for seed in range(6, 16):  # requests keep being answered: by the other node's replica
            ask(seed)
        wait_until(
            lambda d: (
                d["ready"] == 2
                and {r.node for r in registry.list_replicas(ANY_TENANT, deployment_id)}
                == {node_name(n) for n in ray_pool.nodes if n != victim}
            )
        )
        stopped = [
            r for r in registry.list_replicas(ANY_TENANT, deployment_id, live=False) if r.state in ("stopped", "failed")
        ]
        assert {r.node for r in stopped} == {node_name(victim)}
        ask(99)
    finally:
        stop.set()
        thread.join(timeout=30)
