"""Deployments: replicas placed across device kinds, loaded on their devices, serving requests over the API,
and moved when a device is drained or its node is lost, with no request lost."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

import hamr
from hamr.pool.control.deployments import Reconciler
from hamr.pool.dispatch.dispatcher import Dispatcher
from hamr.pool.registry import ANY_TENANT, InvalidTransition, NotFound, RegistryError
from hamr.pool.scheduler.replicas import Candidate, place_replicas
from hamr.pool.service import create_app
from hamr.pool.wire import tensors
from tests.helpers import BACKENDS, hamr_cli, mlp_model, mlp_reference, npy, one_error_line, registry_for, wait_until

TOL = {"rtol": 1e-4, "atol": 1e-5}


# Placement: spread across kinds, then variants, architectures, devices, nodes.


def fleet() -> list[Candidate]:
    return [
        Candidate("g1", "cuda:0", "n1", "gpu", "sm_90", ("cuda",)),
        Candidate("g2", "cuda:1", "n1", "gpu", "sm_90", ("cuda",)),
        Candidate("g3", "cuda:0", "n2", "gpu", "sm_80", ("cuda",)),
        Candidate("c1", "cpu", "n1", "cpu", "x86-64-v4", ("cpu", "reference")),
        Candidate("c2", "cpu", "n2", "cpu", "x86-64-v3", ("cpu", "reference")),
        Candidate("o1", "opencl:0", "n1", "cpu", "pthread", ("opencl",)),
        Candidate("p1", "npu:0", "n3", "npu", "x1", ("ascend",)),
    ]


def test_replicas_take_one_device_of_each_kind_before_a_second_of_any():
    candidates = fleet()
    placed, short = place_replicas(candidates, [], 2, ("cuda", "cpu"), share=500)
    kinds = {c.uuid: c.kind for c in candidates}
    assert sorted(kinds[p.device] for p in placed) == ["cpu", "gpu"] and short == ""
    placed, _ = place_replicas(candidates, [], 4, ("cuda", "cpu", "opencl"), share=500)
    chosen = [next(c for c in candidates if c.uuid == p.device) for p in placed]
    by_kind = {k: sum(c.kind == k for c in chosen) for k in ("gpu", "cpu")}
    assert by_kind == {"gpu": 2, "cpu": 2}  # the npu runs none of the variants
    gpus = [c for c in chosen if c.kind == "gpu"]
    assert len({c.architecture for c in gpus}) == 2  # then across architectures: sm_90 and sm_80
    cpus = [c for c in chosen if c.kind == "cpu"]
    assert len({p.target for p in placed if p.device in {c.uuid for c in cpus}}) == 2  # cpu and opencl variants
    assert all(p.reason.startswith("spread: ") for p in placed)


def test_existing_replicas_count_and_shares_limit_a_device():
    candidates = [
        Candidate("g1", "cuda:0", "n1", "gpu", "sm_90", ("cuda",), reserved=600),
        Candidate("c1", "cpu", "n1", "cpu", "x", ("cpu",)),
    ]
    placed, short = place_replicas(candidates, [candidates[1]], 3, ("cuda", "cpu"), share=400)
    # the gpu fits one more (600 + 400); the cpu, already holding one, fits two more
    assert [p.device for p in placed] == ["g1", "c1", "c1"] and short == ""
    placed, short = place_replicas(candidates, [], 5, ("cuda", "cpu"), share=400)
    assert len(placed) == 3 and short.startswith("waiting: 2 replica(s) do not fit")
    placed, short = place_replicas(candidates, [], 1, ("rocm",), share=1)
    assert placed == [] and "0 run one of rocm" in short


# The wire: named raw tensors.


def test_tensors_round_trip_with_aligned_offsets():
    values = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([True, False]),
        "i": np.arange(5, dtype=">i8"),
        "empty": np.zeros((0, 3), np.float16),
        "s": np.float64(2.5),
    }
    body = tensors.encode(values)
    header = json.loads(body[16 : 16 + int.from_bytes(body[8:12], "little")])
    assert all(t["offset"] % 64 == 0 for t in header["tensors"])
    decoded = tensors.decode(body)
    assert list(decoded) == list(values)
    for name, value in values.items():
        np.testing.assert_array_equal(decoded[name], value)
        assert decoded[name].dtype == np.asarray(value).dtype.newbyteorder("=")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"", "shorter than"),
        (lambda b: b"NOTMAGIC" + b[8:], "magic"),
        (lambda b: b[:40], "does not fit"),
        (lambda b: b[:-48], "runs past"),
        (lambda b: b.replace(b'"<f4"', b'"|O8"'), "dtype"),
        (lambda b: b.replace(b'"nbytes":24', b'"nbytes":28'), "28 bytes"),
        (lambda b: b.replace(b'"offset":0', b'"offset":4'), "unaligned"),
        (lambda b: b.replace(b'"tensors"', b'"tensorz"'), "bad tensors header"),
        (lambda b: b.replace(b'"nbytes":24', b'"nbytes":-4'), "non-negative"),
        (lambda b: b.replace(b"[2,3]", b"[2,9]"), "72 expected"),
    ],
)
def test_malformed_tensor_bodies_are_refused_with_one_line(mutate, message):
    body = tensors.encode({"x": np.zeros((2, 3), np.float32)})
    with pytest.raises(tensors.TensorsError, match=message):
        tensors.decode(mutate(body))


# The registry's deployments.


def test_a_deployment_never_gets_more_replicas_than_it_wants(registry, exe_bytes):
    from hamr.pool.drivers import discover

    tenant = registry.create_tenant("acme").id
    exe = registry.upload_executable(tenant, exe_bytes)
    registry.heartbeat("n1", discover().devices)
    cpu = next(d for d in registry.list_devices() if d.local_id == "cpu")
    deployment = registry.create_deployment(tenant, exe.id, 1, share=300)
    first = registry.add_replica(deployment.id, cpu.uuid, "test")
    with pytest.raises(RegistryError, match="already has 1 of 1"):
        registry.add_replica(deployment.id, cpu.uuid, "test")
    assert registry.replica_shares() == {cpu.uuid: 300}
    registry.set_replica_state(first.id, "ready")
    with pytest.raises(InvalidTransition, match="from ready to pending"):
        registry.set_replica_state(first.id, "pending")
    registry.scale_deployment(tenant, deployment.id, 2)
    registry.add_replica(deployment.id, cpu.uuid, "test")
    assert registry.replica_shares() == {cpu.uuid: 600}
    with pytest.raises(RegistryError, match="replicas must be 0 to 1024"):
        registry.scale_deployment(tenant, deployment.id, 5000)
    registry.delete_deployment(tenant, deployment.id)
    assert registry.list_replicas(ANY_TENANT, deployment.id) == [] and registry.replica_shares() == {}
    states = [r.state for r in registry.list_replicas(ANY_TENANT, deployment.id, live=False)]
    assert states == ["stopped", "stopped"]
    with pytest.raises(NotFound):
        registry.scale_deployment(tenant, deployment.id, 1)


# End to end in one process: the reconciler, the node's replica host, and the API.


class Served:
    def __init__(self, registry, exe_bytes):
        self.registry = registry
        self.tenant = registry.create_tenant("acme").id
        token, _ = registry.create_token(self.tenant)
        other = registry.create_tenant("other").id
        self.other_token, _ = registry.create_token(other)
        self.exe = registry.upload_executable(self.tenant, exe_bytes)
        self.dispatcher = Dispatcher(registry, "n1", serve_replicas=True)
        self.reconciler = Reconciler(registry)
        self.client = TestClient(
            create_app(registry, replica_hosts=[self.dispatcher.replicas]),
            headers={"Authorization": f"Bearer {token}"},
            raise_server_exceptions=False,
        )
        self.client.app.state.tokens.ttl_s = 600.0  # a token cached by one request stays for the test's next ones
        self.stop = threading.Event()
        self.loop = threading.Thread(target=self._loop, daemon=True)
        self.loop.start()

    def _loop(self):
        while not self.stop.is_set():
            self.reconciler.step()
            self.dispatcher.step()
            time.sleep(0.02)

    def deployment(self, deployment_id):
        return self.client.get(f"/v1/deployments/{deployment_id}").json()

    def wait_until(self, deployment_id, check, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.deployment(deployment_id)
            if check(d):
                return d
            time.sleep(0.05)
        raise AssertionError(f"deployment never got there: {d}")

    def infer(self, deployment_id, x, wait=60):
        response = self.client.post(
            f"/v1/deployments/{deployment_id}/infer?wait={wait}",
            content=tensors.encode({"x": x}),
            headers={"Content-Type": tensors.MEDIA_TYPE},
        )
        return response

    def close(self):
        self.stop.set()
        self.loop.join(timeout=30)
        self.dispatcher.close()


@pytest.fixture
def served(request, tmp_path, exe_bytes):
    """Served on a SQLite registry, and on PostgreSQL too where a test is parametrised with BACKENDS."""
    with registry_for(request, tmp_path) as registry:
        s = Served(registry, exe_bytes)
        yield s
        s.close()


def ready_on(d) -> list[str]:
    return sorted(r["architecture"] for r in d["replica_list"] if r["state"] == "ready")


@pytest.mark.opencl
def test_replicas_spread_over_cpu_and_opencl_serve_numpys_answer(served):
    created = served.client.post("/v1/deployments", json={"executable_id": served.exe.id, "replicas": 2})
    assert created.status_code == 201, created.text
    deployment = created.json()["id"]
    d = served.wait_until(deployment, lambda d: d["ready"] == 2)
    devices = {r["device"] for r in d["replica_list"]}
    local = {dev.uuid: dev.local_id for dev in served.registry.list_devices()}
    assert sorted(local[u] for u in devices) == ["cpu", "opencl:0"]  # one per variant before two on either
    for seed in range(6):  # each replica is tried first, then the one that finishes soonest answers
        x = np.random.default_rng(seed).standard_normal((seed + 1, 16)).astype(np.float32)
        response = served.infer(deployment, x)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(tensors.decode(response.content)["y"], mlp_reference(x), **TOL)
    served_by = {h.view.local_id: h.served for h in served.dispatcher.replicas.hosted.values()}
    assert sum(served_by.values()) == 6 and min(served_by.values()) >= 1
    # requests go where they would finish soonest: (running + 1) x the replica's average run time
    host = served.dispatcher.replicas
    by_device = {h.view.local_id: h for h in host.hosted.values()}
    by_device["cpu"].seconds, by_device["opencl:0"].seconds = 0.001, 0.005
    assert host.pick(deployment) is by_device["cpu"]  # 1 x 1 ms against 1 x 5 ms; it now runs one
    by_device["cpu"].running += 4
    assert host.pick(deployment) is by_device["opencl:0"]  # 6 x 1 ms against 1 x 5 ms
    by_device["cpu"].running, by_device["opencl:0"].running = 0, 0
    assert served.client.app.state.fast_answers == 6  # the token was cached by the GETs before: all took the fast path
    served.dispatcher.busy_time.flush()
    metrics = served.client.get("/metrics").text
    busy = [line for line in metrics.splitlines() if line.startswith("hamr_device_busy_seconds_total")]
    assert len(busy) == 2 and all(float(line.split()[-1]) > 0 for line in busy), busy


@pytest.mark.opencl
def test_draining_a_replicas_device_moves_it_and_loses_no_request(served):
    deployment = served.client.post("/v1/deployments", json={"executable_id": served.exe.id, "replicas": 2}).json()[
        "id"
    ]
    served.wait_until(deployment, lambda d: d["ready"] == 2)
    cpu = next(d for d in served.registry.list_devices() if d.local_id == "cpu")
    inputs = [np.random.default_rng(seed).standard_normal((2, 16)).astype(np.float32) for seed in range(60)]

    def ask(x):
        response = served.infer(deployment, x)
        return response.status_code, response.content

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(ask, x) for x in inputs[:30]]
        served.registry.set_drained(cpu.uuid)  # while requests are in flight
        futures += [pool.submit(ask, x) for x in inputs[30:]]
        answers = [f.result() for f in futures]
    for x, (status, body) in zip(inputs, answers, strict=True):
        assert status == 200, body
        np.testing.assert_allclose(tensors.decode(body)["y"], mlp_reference(x), **TOL)
    d = served.wait_until(
        deployment, lambda d: d["ready"] == 2 and all(r["architecture"] != cpu.architecture for r in d["replica_list"])
    )
    assert ready_on(d) == [served.registry.get_device(d["replica_list"][0]["device"]).architecture] * 2
    stopped = [r for r in served.registry.list_replicas(ANY_TENANT, deployment, live=False) if r.state == "stopped"]
    assert [r.local_id for r in stopped] == ["cpu"] and stopped[0].reason.startswith("migrating off cpu on n1: drained")


def test_a_lost_node_leaves_the_deployment_waiting_with_a_reason(served):
    deployment = served.client.post("/v1/deployments", json={"executable_id": served.exe.id, "replicas": 1}).json()[
        "id"
    ]
    served.wait_until(deployment, lambda d: d["ready"] == 1)
    x = np.ones((1, 16), np.float32)
    assert served.infer(deployment, x).status_code == 200
    served.registry.mark_lost_nodes(0.0)  # the only node: nowhere to move to
    served.wait_until(deployment, lambda d: d["replica_list"] == [])
    deadline = time.monotonic() + 30  # the host drops the stopped replica at its next sync, after the registry says so
    while served.dispatcher.replicas.expected(deployment) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    response = served.infer(deployment, x, wait=0.2)
    assert response.status_code == 503
    assert "has no ready replica after 0.2 s (wants 1; live: none placed)" in response.json()["detail"]
    waiting = [e.payload["reason"] for e in served.registry.list_events(ANY_TENANT, kind="deployment.waiting")]
    assert waiting and "0 have 500/1000 unreserved" in waiting[-1] or "0 schedulable" in waiting[-1], waiting
    served.dispatcher.heartbeat()  # the node is back: a new replica is placed and loaded
    served.wait_until(deployment, lambda d: d["ready"] == 1)
    np.testing.assert_allclose(tensors.decode(served.infer(deployment, x).content)["y"], mlp_reference(x), **TOL)


@pytest.mark.parametrize("served", BACKENDS, indirect=True)
def test_scale_delete_bad_inputs_and_other_tenants(served):
    deployment = served.client.post("/v1/deployments", json={"executable_id": served.exe.id, "replicas": 2}).json()[
        "id"
    ]
    served.wait_until(deployment, lambda d: d["ready"] == 2)
    assert served.client.patch(f"/v1/deployments/{deployment}", json={"replicas": 1}).status_code == 200
    served.wait_until(deployment, lambda d: len(d["replica_list"]) == 1)
    wrong = served.client.post(
        f"/v1/deployments/{deployment}/infer",
        content=tensors.encode({"x": np.ones((1, 3), np.float32)}),
        headers={"Content-Type": tensors.MEDIA_TYPE},
    )
    assert wrong.status_code == 400 and "x" in wrong.json()["detail"]  # the fast path hands it to the route
    unknown = served.client.post(
        f"/v1/deployments/{deployment}/infer", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert unknown.status_code == 415
    x = np.ones((1, 16), np.float32)
    multipart = served.client.post(f"/v1/deployments/{deployment}/infer", files={"x": ("x.npy", npy(x))})
    np.testing.assert_allclose(tensors.decode(multipart.content)["y"], mlp_reference(x), **TOL)
    theirs = served.client.post(
        f"/v1/deployments/{deployment}/infer",
        content=tensors.encode({"x": x}),
        headers={"Content-Type": tensors.MEDIA_TYPE, "Authorization": f"Bearer {served.other_token}"},
    )
    assert theirs.status_code == 404 and theirs.json()["detail"] == f"deployment {deployment} not found"
    served.stop.set()  # the pool's loop, which would stop the replica here, is held back: the DELETE alone must do it
    served.loop.join(timeout=30)
    assert served.client.delete(f"/v1/deployments/{deployment}").status_code == 200
    gone = served.infer(deployment, x, wait=0)
    assert gone.status_code == 404


def test_a_retired_deployment_is_not_loaded_again_from_a_registry_read_before_its_deletion(served):
    deployment = served.client.post("/v1/deployments", json={"executable_id": served.exe.id, "replicas": 1}).json()[
        "id"
    ]
    served.wait_until(deployment, lambda d: d["ready"] == 1)
    served.stop.set()
    served.loop.join(timeout=30)
    host = served.dispatcher.replicas
    host.retire(deployment)  # the registry still lists its replica ready, as a sync racing the DELETE would read it
    for _ in range(20):
        host.sync()
        time.sleep(0.05)
    wait_until("the host to finish any load", lambda: not host.loading(), 30, every=0.05)
    assert host.expected(deployment) is None


# The command line, against a real `hamr pool up` process.


def test_deploy_infer_scale_and_undeploy_from_the_command_line(cli_pool, tmp_path):
    root, env, url = cli_pool
    exe = hamr.compile(mlp_model(), targets=["cpu"]).save(tmp_path / "mlp.hamr")
    x = np.random.default_rng(7).standard_normal((4, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    deployed = hamr_cli("pool", "deploy", exe, "--replicas", "1", env=env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    deployment = deployed.stdout.split()[1]
    result = hamr_cli(
        "pool", "infer", deployment, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out", env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    index = json.loads((tmp_path / "out" / "outputs.json").read_text())
    np.testing.assert_allclose(np.load(tmp_path / "out" / index["y"]), mlp_reference(x), **TOL)
    listed = json.loads(hamr_cli("pool", "deployments", "--json", env=env).stdout)
    (mine,) = [d for d in listed if str(d["id"]) == deployment]
    assert mine["ready"] == 1 and mine["replica_list"][0]["kind"] == "cpu"
    assert hamr_cli("pool", "scale", deployment, "0", env=env).returncode == 0
    assert hamr_cli("pool", "undeploy", deployment, env=env).returncode == 0
    message = one_error_line(hamr_cli("pool", "infer", deployment, "--input", f"x={tmp_path / 'x.npy'}", env=env))
    assert f"(404): deployment {deployment} not found" in message


def test_the_data_plane_client_keeps_one_connection_and_outlives_the_servers_idle_close(cli_pool, tmp_path):
    from hamr.errors import HamrError
    from hamr.pool.wire.client import InferClient

    root, env, url = cli_pool
    exe = hamr.compile(mlp_model(), targets=["cpu"]).save(tmp_path / "mlp.hamr")
    deployed = hamr_cli("pool", "deploy", exe, "--replicas", "1", env=env)
    deployment = int(deployed.stdout.split()[1])
    token = (root / "default.token").read_text().strip()
    x = np.random.default_rng(8).standard_normal((2, 16)).astype(np.float32)
    with InferClient(url, token) as client:
        np.testing.assert_allclose(client.infer(deployment, {"x": x}, wait=60)["y"], mlp_reference(x), **TOL)
        connection = client._connection
        for _ in range(20):
            np.testing.assert_allclose(client.infer(deployment, {"x": x})["y"], mlp_reference(x), **TOL)
        assert client._connection is connection  # kept alive: one connection for every request
        deadline = time.monotonic() + 30  # uvicorn closes a connection idle for 5 s: wait until it has
        while not _closed_by_peer(connection.sock):
            assert time.monotonic() < deadline, "the server never closed the idle connection"
            time.sleep(0.2)
        np.testing.assert_allclose(client.infer(deployment, {"x": x})["y"], mlp_reference(x), **TOL)
        assert client._connection is not connection
        with pytest.raises(HamrError, match=r"\(400\): .*x"):
            client.infer(deployment, {"x": np.ones((1, 3), np.float32)})
        with pytest.raises(HamrError, match=rf"\(404\): deployment {deployment + 1000} not found"):
            client.infer(deployment + 1000, {"x": x})
    with InferClient(url, "not-a-token") as stranger, pytest.raises(HamrError, match=r"\(401\)"):
        stranger.infer(deployment, {"x": x})
    with (
        InferClient("http://127.0.0.1:1", token) as nowhere,
        pytest.raises(HamrError, match="cannot reach the pool at"),
    ):
        nowhere.infer(deployment, {"x": x})
    with pytest.raises(HamrError, match="must be http"):
        InferClient("ftp://example", token)
    assert hamr_cli("pool", "undeploy", deployment, env=env).returncode == 0


def _closed_by_peer(sock) -> bool:
    import select
    import socket

    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
