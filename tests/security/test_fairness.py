"""Fairness under load, against a real `hamr pool up` (docs/pool.md, "Fairness"): one tenant's floods
of jobs or of deployment requests do not starve another, priorities stop at what the admin grants,
and a tenant's queued jobs and stored bytes are bounded.

Each test mounts the attack as alice (the attacker) and checks it fails, with bob as the victim.
Limits are set small through the admin API so the tests stay short.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hamr
from hamr.pool.wire import tensors
from tests.helpers import mlp_model, mlp_reference, npy, wait_until

SLOW_BATCH, SLOW_WIDTH = 128, 1024


def slow_model(layers: int = 10) -> onnx.ModelProto:
    """A chain of MatMuls with one shared weight: about 0.3 s a run on the reference target here."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(
        (rng.standard_normal((SLOW_WIDTH, SLOW_WIDTH)) / math.sqrt(SLOW_WIDTH)).astype(np.float32), "w"
    )
    nodes, previous = [], "x"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [previous, "w"], [f"h{i}"]))
        previous = f"h{i}"
    nodes.append(helper.make_node("Tanh", [previous], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [SLOW_BATCH, SLOW_WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [SLOW_BATCH, SLOW_WIDTH])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def slow_hamr() -> bytes:
    return hamr.compile(slow_model(), targets=["reference"]).to_bytes()


@pytest.fixture(scope="module")
def fast_hamr() -> bytes:
    return hamr.compile(mlp_model(), targets=["reference"]).to_bytes()


def upload(client: httpx.Client, data: bytes) -> int:
    response = client.post("/v1/executables", content=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(client: httpx.Client, exe: int, x: np.ndarray, **fields) -> httpx.Response:
    data = {"executable_id": str(exe)} | {k: str(v) for k, v in fields.items()}
    return client.post("/v1/jobs", data=data, files={"x": ("x.npy", npy(x), "application/octet-stream")})


def set_limits(pool, tenant, **limits) -> None:
    tenant_id = next(t["id"] for t in pool.admin.get("/v1/tenants").json() if t["name"] == tenant.name)
    response = pool.admin.patch(f"/v1/tenants/{tenant_id}", json=limits)
    assert response.status_code == 200, response.text


def deploy(client: httpx.Client, exe: int) -> int:
    response = client.post("/v1/deployments", json={"executable_id": exe, "replicas": 1})
    assert response.status_code == 201, response.text
    deployment = response.json()["id"]
    wait_until("a ready replica", lambda: client.get(f"/v1/deployments/{deployment}").json()["ready"] == 1, 60)
    return deployment


def one_line_detail(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(math.ceil(0.99 * len(ordered)) - 1, 0)]


def test_a_priority_flood_is_refused_and_granted_priority_does_not_jump_another_tenants_job(real_pool, slow_hamr):
    alice, bob = real_pool.alice, real_pool.bob
    x = np.ones((SLOW_BATCH, SLOW_WIDTH), np.float32)
    exe_a, exe_b = upload(alice.client, slow_hamr), upload(bob.client, slow_hamr)

    refused = submit(alice.client, exe_a, x, priority=1000)  # nobody granted alice priority 1000
    assert refused.status_code == 403, refused.text
    assert "may ask for priority up to 0" in one_line_detail(refused)

    set_limits(real_pool, alice, max_priority=1000)  # granted: it orders her own jobs, not the whole queue
    flood = [submit(alice.client, exe_a, x, priority=1000) for _ in range(12)]
    assert all(r.status_code == 201 for r in flood), [r.text for r in flood if r.status_code != 201]
    job_b = submit(bob.client, exe_b, x, priority=0)
    assert job_b.status_code == 201, job_b.text
    job_b = job_b.json()["id"]
    done = bob.client.get(f"/v1/jobs/{job_b}", params={"wait": 60}, timeout=90).json()
    assert done["state"] == "succeeded", done

    def placed_at(client, job_id):
        return client.get(f"/v1/jobs/{job_id}/placements").json()[0]["created_at"]

    for job in flood:
        alice.client.get(f"/v1/jobs/{job.json()['id']}", params={"wait": 60}, timeout=90)
    bob_placed = placed_at(bob.client, job_b)
    after_bob = sum(placed_at(alice.client, job.json()["id"]) > bob_placed for job in flood)
    # Bob's job takes the first device that frees once it is queued: at most the 2 devices' jobs and
    # the ones placed while he submitted go before it. FIFO by priority would place it after all 12.
    assert after_bob >= 6, f"only {after_bob} of alice's 12 priority-1000 jobs were placed after bob's job"


def test_a_flood_of_deployment_requests_gets_429_and_another_tenant_stays_fast(real_pool, slow_hamr, fast_hamr):
    alice, bob = real_pool.alice, real_pool.bob
    set_limits(real_pool, alice, max_inflight_requests=2, max_queued_requests=4)
    slow = deploy(alice.client, upload(alice.client, slow_hamr))
    fast = deploy(bob.client, upload(bob.client, fast_hamr))
    slow_body = tensors.encode({"x": np.ones((SLOW_BATCH, SLOW_WIDTH), np.float32)})
    xb = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    fast_body = tensors.encode({"x": xb})
    media = {"Content-Type": tensors.MEDIA_TYPE}

    flooding = threading.Event()
    answers: list[httpx.Response] = []

    def alice_request(_):
        with httpx.Client(base_url=real_pool.url, headers=alice.client.headers, timeout=120) as client:
            flooding.wait()
            return client.post(f"/v1/deployments/{slow}/infer", content=slow_body, headers=media)

    reads, bob_answers = [], []
    with concurrent.futures.ThreadPoolExecutor(60) as threads:
        futures = [threads.submit(alice_request, i) for i in range(60)]
        flooding.set()
        at_least, deadline = time.monotonic() + 3, time.monotonic() + 10  # while the flood lasts, 3 s at least
        while time.monotonic() < at_least or (time.monotonic() < deadline and not all(f.done() for f in futures)):
            start = time.perf_counter()
            assert bob.client.get("/v1/jobs").status_code == 200
            reads.append(time.perf_counter() - start)
            bob_answers.append(bob.client.post(f"/v1/deployments/{fast}/infer", content=fast_body, headers=media))
            time.sleep(0.05)
        answers = [f.result() for f in futures]

    refused = [r for r in answers if r.status_code == 429]
    assert {r.status_code for r in answers} <= {200, 429}, [r.text for r in answers if r.status_code not in (200, 429)]
    assert len(refused) >= 30, (
        f"{len(refused)} of alice's 60 concurrent requests refused; her limits are 2 running + 4 waiting"
    )
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert "max_inflight_requests 2" in one_line_detail(refused[0])
    assert len(reads) >= 5 and p99(reads) < 1.5, (
        f"bob's GET /v1/jobs p99 {p99(reads):.2f} s during alice's flood ({len(reads)} reads)"
    )
    assert bob_answers and all(r.status_code == 200 for r in bob_answers), [
        r.text for r in bob_answers if r.status_code != 200
    ]
    np.testing.assert_allclose(tensors.decode(bob_answers[-1].content)["y"], mlp_reference(xb), rtol=1e-5, atol=1e-6)


def test_queued_jobs_and_stored_bytes_are_bounded_per_tenant(real_pool, fast_hamr):
    alice = real_pool.alice
    exe = upload(alice.client, fast_hamr)
    x = np.ones((2, 16), np.float32)
    set_limits(real_pool, alice, max_queued_jobs=2)
    waiting = [
        submit(alice.client, exe, x, n_devices=64) for _ in range(2)
    ]  # more devices than the pool has: they wait
    assert [r.status_code for r in waiting] == [201, 201], [r.text for r in waiting]
    third = submit(alice.client, exe, x, n_devices=64)
    assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1, third.text
    assert "max_queued_jobs is 2" in one_line_detail(third)
    for job in waiting:
        assert alice.client.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code == 200
    assert submit(alice.client, exe, x).status_code == 201  # room again once they left the queue

    before = alice.client.get("/v1/executables").json()
    set_limits(real_pool, alice, max_stored_bytes=1)
    new_file = hamr.compile(slow_model(2), targets=["reference"]).to_bytes()  # bytes alice has not stored yet
    too_much = alice.client.post(
        "/v1/executables", content=new_file, headers={"Content-Type": "application/octet-stream"}
    )
    assert too_much.status_code == 413, too_much.text
    assert "max_stored_bytes of 1" in one_line_detail(too_much)
    job = submit(alice.client, exe, x)
    assert job.status_code == 413 and "max_stored_bytes" in one_line_detail(job), job.text
    assert alice.client.get("/v1/executables").json() == before  # nothing was stored
    set_limits(real_pool, alice, max_stored_bytes=None)
    assert submit(alice.client, exe, x).status_code == 201
