"""The dashboard without a browser: /v1/dashboard's tokens and tenant scope, the page's files, the stranded
share, and the history's ring buffer and request rates (hamr.pool.service.dashboard_data).

The page itself, in a real Chromium, is tests/pool/integration/test_dashboard.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hamr.pool.registry import ANY_TENANT
from hamr.pool.service import create_app
from hamr.pool.service.dashboard_data import KEPT_SAMPLES, History, stranded_share
from tests.helpers import bearer, report


@pytest.fixture
def board(registry, exe_bytes):
    """A registry of two nodes and two tenants, each with a job (a's placed, b's waiting); b has a deployment
    whose replica reserves 300 thousandths of dev-2; dev-3 is drained."""
    registry.heartbeat(
        "node-1",
        [
            report("dev-1", details={"utilisation": 0.25}),
            report("dev-2", kind="gpu", local_id="cuda:0"),
            report("dev-3", kind="gpu", local_id="cuda:1"),
        ],
    )
    registry.heartbeat("node-2", [report("dev-4", memory_free=None)])
    registry.set_drained("dev-3")
    admin, _ = registry.create_token(None, admin=True)
    tenants, tokens, jobs = {}, {}, {}
    for name in ("a", "b"):
        tenants[name] = registry.create_tenant(name).id
        tokens[name], _ = registry.create_token(tenants[name])
        exe = registry.upload_executable(tenants[name], exe_bytes)
        jobs[name] = registry.submit_job(tenants[name], exe.id, {"x": np.ones((2, 16), np.float32)}).id
    registry.schedule_job(ANY_TENANT, jobs["a"], ["dev-1"], reason="binpack: chose dev-1")
    registry.record_event("job.waiting", f"job:{jobs['b']}", tenants["b"], {"reason": "waiting: 0 fit"})
    deployment = registry.create_deployment(tenants["b"], exe.id, 1, share=300)
    registry.add_replica(deployment.id, "dev-2", reason="spread")
    agent, _ = registry.create_token(None, node="node-1")
    client = TestClient(create_app(registry), raise_server_exceptions=False)
    yield SimpleNamespace(
        client=client,
        admin=bearer(admin),
        a=bearer(tokens["a"]),
        b=bearer(tokens["b"]),
        agent=bearer(agent),
        jobs=jobs,
        deployment=deployment.id,
    )


def test_the_snapshot_needs_a_token_like_the_rest_of_the_api(board):
    for headers in ({}, bearer("hamr_not-a-token"), {"Authorization": "Basic abc"}):
        answer = board.client.get("/v1/dashboard", headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", answer.text
        assert set(answer.json()) == {"detail"}
    refused = board.client.get("/v1/dashboard", headers=board.agent)
    assert refused.status_code == 403 and "agent token of node node-1" in refused.json()["detail"]


def test_a_tenant_sees_its_own_jobs_and_deployments_and_no_nodes(board):
    a = board.client.get("/v1/dashboard", headers=board.a).json()
    assert (a["admin"], a["tenant"], a["stranded"], a["request_rates"]) == (False, "a", {}, [])
    assert a["expected_fragment"] == {}
    (job,) = a["jobs"]
    assert (job["id"], job["state"], job["attempts"]) == (board.jobs["a"], "scheduled", 1)
    assert [(p["attempt"], p["device"], p["reason"]) for p in job["placements"]] == [
        (1, "dev-1", "binpack: chose dev-1")
    ]
    assert {d["uuid"] for d in a["devices"]} == {"dev-1", "dev-2", "dev-4"}  # the schedulable ones: dev-3 is drained

    b = board.client.get("/v1/dashboard", headers=board.b).json()
    assert [(j["id"], j["reason"], j["placements"]) for j in b["jobs"]] == [(board.jobs["b"], "waiting: 0 fit", [])]
    assert [r["deployment_id"] for r in b["request_rates"]] == [board.deployment]
    assert str(board.jobs["a"]) not in {str(j["id"]) for j in b["jobs"]}


def test_the_admin_sees_every_tenant_device_and_node(board):
    answer = board.client.get("/v1/dashboard", headers=board.admin).json()
    assert answer["admin"] and answer["tenant"] is None
    assert [j["id"] for j in answer["jobs"]] == [board.jobs["b"], board.jobs["a"]]  # newest first
    assert answer["stranded"] == {"node-1": pytest.approx(0.7), "node-2": 0.0}  # dev-1 is whole (a job), dev-2 300/1000
    # FGD over the requests (a 300 share, a whole device: half each) and the usable devices (dev-3 is drained):
    # node-1's 700 left on dev-2 fit the share but not a whole device; node-2's whole dev-4 fits both
    assert answer["expected_fragment"] == {"node-1": pytest.approx(0.5 * 0.7), "node-2": 0.0}
    series = {d["uuid"]: d for d in answer["devices"]}
    assert set(series) == {"dev-1", "dev-2", "dev-3", "dev-4"}
    assert series["dev-1"]["utilisation"] == [0.25] and series["dev-1"]["memory_used"] == [32 << 30]
    assert series["dev-4"]["memory_used"] == [None] and series["dev-2"]["utilisation"] == [None]
    assert [r["deployment_id"] for r in answer["request_rates"]] == [board.deployment]


def test_the_page_is_public_and_keeps_to_its_own_files(board):
    page = board.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/dashboard/dashboard.js"' in page.text and "http" not in page.text.replace("http-equiv", "")
    script = board.client.get("/dashboard/dashboard.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "sessionStorage" in script.text and "innerHTML" not in script.text
    assert board.client.get("/dashboard/dashboard.css").headers["content-type"].startswith("text/css")
    for name in ("index.html", "nope.js", "..%2F..%2Fapp.py"):
        missing = board.client.get(f"/dashboard/{name}")
        assert missing.status_code == 404 and set(missing.json()) == {"detail"}, name


def test_the_stranded_share_counts_only_partly_allocated_devices():
    assert stranded_share([]) == 0.0
    assert stranded_share([0, 1000, 0]) == 0.0  # free and whole devices strand nothing
    assert stranded_share([250, 999, 500, 1000, 0]) == pytest.approx((750 + 1 + 500) / 1000)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def host(**served):
    """A ReplicaHost as History reads it: replica id (r<N>) -> (deployment id, requests answered)."""
    return SimpleNamespace(
        hosted={
            int(r[1:]): SimpleNamespace(view=SimpleNamespace(deployment_id=d), served=n) for r, (d, n) in served.items()
        }
    )


def test_request_rates_come_from_replicas_seen_in_two_samples_in_a_bounded_buffer():
    clock, no_devices = Clock(), SimpleNamespace(list_devices=list)
    history = History(every_s=2.0, clock=clock)
    history.refresh(no_devices, [host(r1=(7, 0))])
    clock.now += 1
    history.refresh(no_devices, [host(r1=(7, 50))])  # younger than every_s: no sample
    clock.now += 1
    history.refresh(no_devices, [host(r1=(7, 10))])
    clock.now += 2
    history.refresh(no_devices, [host(r1=(7, 14), r2=(7, 100)), host(r3=(8, 6))])  # r2, r3 are new: not counted
    clock.now += 4
    history.refresh(no_devices, [host(r2=(7, 104), r3=(8, 10))])  # r1 stopped
    rates = history.request_rates([7, 8, 9])
    assert rates[7] == ([1002.0, 1004.0, 1008.0], [5.0, 2.0, 1.0])
    assert rates[8] == ([1002.0, 1004.0, 1008.0], [0.0, 0.0, 1.0])
    assert rates[9] == ([1002.0, 1004.0, 1008.0], [0.0, 0.0, 0.0])
    for _ in range(KEPT_SAMPLES + 50):
        clock.now += 2
        history.refresh(no_devices, [])
    assert len(history.samples) == KEPT_SAMPLES
