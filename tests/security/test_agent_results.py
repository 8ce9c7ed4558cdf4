"""A remote agent's results are checked against the model's signature (issue 11, item 8), on a real pool.

The attacker is an agent with a valid token for its own node: the server's own devices are
drained, so alice's job goes to it, and it posts outputs the model does not give. Before the
fix they were recorded as the job's outputs (an extra output, a wrong dtype or shape) or the
job succeeded with an output missing; now the attempt fails with one line and nothing is stored.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

import hamr
from tests.helpers import bearer, mlp_model, mlp_reference, npy, wait_until

NODE = "evil-agent"
DEVICE = {
    "uuid": "evil-agent-cpu",
    "driver": "cpu",
    "vendor": "Acme",
    "kind": "cpu",
    "architecture": "x86-64",
    "memory_total": 1 << 30,
    "compute_units": 4,
    "targets": ["cpu", "reference"],
    "local_id": "cpu",
}
X = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
Y = mlp_reference(X).astype(np.float32)


@pytest.fixture(scope="module")
def agent(real_pool):
    """The evil agent's client (its node's own token), once the server's devices are drained; and alice's executable."""
    for device in real_pool.admin.get("/v1/devices").json():
        assert real_pool.admin.post(f"/v1/devices/{device['uuid']}/drain").status_code == 200
    token = real_pool.admin.post(f"/v1/agents/{NODE}/tokens").json()["token"]
    client = httpx.Client(base_url=real_pool.url, headers=bearer(token), timeout=60)
    _beat(client)
    exe = real_pool.alice.client.post(
        "/v1/executables", content=hamr.compile(mlp_model(), targets=["reference"]).to_bytes()
    )
    assert exe.status_code == 201, exe.text
    yield client, exe.json()["id"]
    client.close()


def _beat(client: httpx.Client) -> None:
    beat = client.post(f"/v1/agents/{NODE}/heartbeat", json={"devices": [DEVICE]})
    assert beat.status_code == 200, beat.text


def _job_taken_by_the_agent(real_pool, agent) -> dict:
    client, executable = agent
    job = real_pool.alice.client.post(
        "/v1/jobs", data={"executable_id": str(executable)}, files={"x": ("x.npy", npy(X))}
    )
    assert job.status_code == 201, job.text

    def taken():
        _beat(client)
        items = client.post(f"/v1/agents/{NODE}/work", params={"wait": 2}).json()
        return next((i for i in items if i["job"] == job.json()["id"]), None)

    item = wait_until("the job to reach the agent", taken, 60)
    feeds = client.get(f"/v1/jobs/{item['job']}/inputs/x")
    assert feeds.status_code == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(feeds.content)), X)
    return item


def _post(client: httpx.Client, item: dict, outputs: dict) -> httpx.Response:
    fields = {
        "job": item["job"],
        "attempt": item["attempt"],
        "ok": "true",
        "latency_s": 0.01,
        "device": "cpu",
        "target": "reference",
    }
    parts = [(k, (None, str(v))) for k, v in fields.items()]
    parts += [(name, (f"{name}.npy", npy(value), "application/octet-stream")) for name, value in outputs.items()]
    return client.post(f"/v1/agents/{NODE}/results", files=parts)


def _settled(real_pool, job: int) -> dict:
    return wait_until(
        f"job {job} to settle",
        lambda: (j := real_pool.alice.client.get(f"/v1/jobs/{job}").json())["state"] in ("succeeded", "failed") and j,
        30,
    )


WRONG_OUTPUTS = {
    "an output the model does not give": (
        {"y": Y, "admin_token": np.zeros(3, np.uint8)},
        "output 'admin_token' is not one of",
    ),
    "a missing output": ({}, "missing output 'y'"),
    "a wrong dtype": ({"y": Y.astype(np.float64)}, "output 'y' is float64[2, 24]; the model gives float32[batch, 24]"),
    "a wrong fixed dimension": ({"y": np.zeros((2, 25), np.float32)}, "output 'y' is float32[2, 25]"),
    "a wrong rank": ({"y": np.zeros((2, 24, 1), np.float32)}, "output 'y' is float32[2, 24, 1]"),
}


@pytest.mark.parametrize("outputs, why", list(WRONG_OUTPUTS.values()), ids=list(WRONG_OUTPUTS))
def test_outputs_that_are_not_the_models_fail_the_attempt_and_are_not_recorded(real_pool, agent, outputs, why):
    client, _ = agent
    item = _job_taken_by_the_agent(real_pool, agent)
    posted = _post(client, item, outputs)
    assert posted.status_code == 422, posted.text
    detail = posted.json()["detail"]
    assert why in detail and "\n" not in detail
    job = _settled(real_pool, item["job"])
    assert job["state"] == "failed" and why in job["error"]
    assert job["outputs"] == []
    assert real_pool.alice.client.get(f"/v1/jobs/{item['job']}/outputs/y").status_code == 404


def test_the_models_own_outputs_are_recorded(real_pool, agent):
    client, _ = agent
    item = _job_taken_by_the_agent(real_pool, agent)
    posted = _post(client, item, {"y": Y})
    assert posted.status_code == 200, posted.text
    job = _settled(real_pool, item["job"])
    assert (job["state"], job["outputs"]) == ("succeeded", ["y"])
    got = real_pool.alice.client.get(f"/v1/jobs/{item['job']}/outputs/y")
    np.testing.assert_array_equal(np.load(io.BytesIO(got.content)), Y)
