"""The pool's HTTP service (hamr.pool.service): auth and scopes, tenant isolation on every route
that takes an id, uploads and their limits, malformed requests, metrics, the committed OpenAPI spec.

Runs on SQLite and on PostgreSQL (the `backend` fixture, tests/pool/conftest.py).
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

import hamr
from hamr.pool.nodes.remote.server import RemoteNodes
from hamr.pool.registry import ANY_TENANT, Registry, open_registry
from hamr.pool.service import create_app
from hamr.pool.service import openapi as service_openapi
from tests.helpers import bearer, npy, report

MAX_UPLOAD = 1 << 20


def _hamr_bytes(graph_name: str) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], graph_name, [x], [y])
    return hamr.compile(helper.make_model(graph), targets=["cpu"]).to_bytes()


@pytest.fixture(scope="session")
def executables() -> tuple[bytes, bytes]:
    return _hamr_bytes("relu"), _hamr_bytes("relu_b")


@dataclass
class Pool:
    registry: Registry
    client: TestClient
    admin: dict
    a: dict  # tenant a's auth header
    b: dict
    exe_a: int
    exe_b: int
    job_a: int
    job_b: int
    hamr_a: bytes
    hamr_b: bytes
    deployment_b: int = 0

    def submit(self, who: dict, exe: int, inputs: dict | None = None, **fields):
        files = {name: (f"{name}.npy", data, "application/octet-stream") for name, data in (inputs or {}).items()}
        data = {"executable_id": str(exe)} | {k: str(v) for k, v in fields.items()}
        return self.client.post("/v1/jobs", headers=who, data=data, files=files or {"x": ("x.npy", npy([1.0, -1.0]))})


@pytest.fixture
def pool(backend, executables):
    url, data_dir = backend
    with open_registry(url, data_dir=data_dir) as registry:
        app = create_app(registry, max_upload_bytes=MAX_UPLOAD, remote=RemoteNodes(registry))
        client = TestClient(app, raise_server_exceptions=False)
        admin, _ = registry.create_token(None, admin=True)
        tokens = {}
        for name in ("a", "b"):
            tenant = registry.create_tenant(name, max_priority=3)
            tokens[name], _ = registry.create_token(tenant.id)
        registry.heartbeat(
            "node-1", [report("dev-1"), report("dev-2", kind="gpu", targets=("cuda",))], address="10.0.0.1"
        )
        a, b = bearer(tokens["a"]), bearer(tokens["b"])
        ids = {}
        for who, data, key in ((a, executables[0], "a"), (b, executables[1], "b")):
            response = client.post("/v1/executables", headers=who, content=data)
            assert response.status_code == 201, response.text
            ids[key] = response.json()["id"]
        p = Pool(registry, client, bearer(admin), a, b, ids["a"], ids["b"], 0, 0, *executables)
        p.job_a, p.job_b = (p.submit(who, ids[k]).json()["id"] for who, k in ((a, "a"), (b, "b")))
        created = client.post("/v1/deployments", headers=b, json={"executable_id": ids["b"], "replicas": 1})
        assert created.status_code == 201, created.text
        p.deployment_b = created.json()["id"]
        yield p


def detail(response) -> str:
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str) and "\n" not in body["detail"], body
    return body["detail"]


def api_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves under /v1 and /metrics.

    Read from the app's OpenAPI paths: FastAPI >= 0.130 keeps included routers in `app.routes` as
    opaque entries, and every route of ours is in the schema (FastAPI's own /docs ones are not).
    """
    paths = app.openapi()["paths"]
    routes = sorted((method.upper(), path) for path, ops in paths.items() for method in ops)
    flat = {(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods}
    assert flat <= set(routes) | {(m, p) for m, p in flat if m == "HEAD"}, "a route is missing from the schema"
    return routes


# Auth and scopes.

ADMIN_ROUTES = [
    ("GET", "/v1/nodes"),
    ("POST", "/v1/nodes/heartbeat"),
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("POST", "/v1/devices/dev-1/drain"),
    ("POST", "/v1/devices/dev-1/undrain"),
    ("PATCH", "/v1/tenants/1"),
    ("POST", "/v1/agents/node-9/heartbeat"),
    ("POST", "/v1/agents/node-9/work"),
    ("POST", "/v1/agents/node-9/results"),
    ("GET", "/v1/agents/node-9/requests/1"),
    ("POST", "/v1/agents/node-9/requests/1"),
]


def test_missing_invalid_and_revoked_tokens_are_401(pool):
    revocable, row = pool.registry.create_token(pool.registry.get_tenant_by_name("a").id)
    pool.registry.revoke_token(ANY_TENANT, row.id)
    for headers in ({}, bearer("hamr_nope"), bearer("not-a-token"), {"Authorization": "Basic eDp5"}, bearer(revocable)):
        for method, path in [("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{pool.job_a}"), ("GET", "/v1/nodes")]:
            response = pool.client.request(method, path, headers=headers)
            assert response.status_code == 401, (headers, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            detail(response)


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_a_tenant_token_on_an_admin_route_is_403(pool, method, path):
    response = pool.client.request(method, path, headers=pool.a, json={"name": "x", "node": "n", "devices": []})
    assert response.status_code == 403, response.text
    assert "admin" in detail(response)
    assert not pool.registry.get_device("dev-1").drained and pool.registry.get_tenant_by_name("x") is None


def test_admins_set_a_tenants_limits_and_a_job_above_its_max_priority_is_refused(pool):
    a = pool.registry.get_tenant_by_name("a").id
    changed = pool.client.patch(
        f"/v1/tenants/{a}", headers=pool.admin, json={"max_priority": 1, "max_queued_jobs": None}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["max_priority"], changed.json()["max_queued_jobs"], changed.json()["weight"]) == (1, None, 1)
    refused = pool.submit(pool.a, pool.exe_a, priority=2)
    assert refused.status_code == 403 and "may ask for priority up to 1" in detail(refused)
    assert pool.submit(pool.a, pool.exe_a, priority=1).status_code == 201
    assert pool.client.patch(f"/v1/tenants/{MISSING}", headers=pool.admin, json={"weight": 2}).status_code == 404
    no_null = pool.client.patch(f"/v1/tenants/{a}", headers=pool.admin, json={"max_priority": None})
    assert no_null.status_code == 400 and "max_priority takes a number" in detail(no_null)
    assert pool.client.patch(f"/v1/tenants/{a}", headers=pool.admin, json={"weight": 0}).status_code == 422


def test_tenants_are_created_by_admins_with_a_token_shown_once(pool):
    response = pool.client.post("/v1/tenants", headers=pool.admin, json={"name": "c", "max_devices": 2})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["tenant"]["name"] == "c" and body["tenant"]["max_devices"] == 2
    assert pool.client.get("/v1/jobs", headers=bearer(body["token"])).json() == []
    assert body["token"] not in json.dumps(pool.client.get("/v1/tenants", headers=pool.admin).json())
    assert [t["name"] for t in pool.client.get("/v1/tenants", headers=pool.admin).json()] == ["a", "b", "c"]
    again = pool.client.post("/v1/tenants", headers=pool.admin, json={"name": "c"})
    assert again.status_code == 409 and detail(again) == "tenant 'c' already exists"


# Nodes and devices.


def test_heartbeats_register_nodes_and_devices(pool):
    device = report("dev-3", kind="npu", targets=("reference",)).to_json()
    response = pool.client.post("/v1/nodes/heartbeat", headers=pool.admin, json={"node": "node-2", "devices": [device]})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "node-2" and response.json()["state"] == "up"
    assert [n["name"] for n in pool.client.get("/v1/nodes", headers=pool.admin).json()] == ["node-1", "node-2"]
    assert pool.registry.get_device("dev-3").node_id == pool.registry.get_node("node-2").id
    twice = pool.client.post("/v1/nodes/heartbeat", headers=pool.admin, json={"node": "n", "devices": [device, device]})
    assert twice.status_code == 400 and "twice" in detail(twice)


def test_admins_see_every_device_and_tenants_only_schedulable_ones_without_node_internals(pool):
    assert pool.client.post("/v1/devices/dev-2/drain", headers=pool.admin).json()["drained"] is True
    seen = pool.client.get("/v1/devices", headers=pool.admin).json()
    assert [(d["uuid"], d["node"], d["drained"]) for d in seen] == [
        ("dev-1", "node-1", False),
        ("dev-2", "node-1", True),
    ]
    public = pool.client.get("/v1/devices", headers=pool.a).json()
    assert [d["uuid"] for d in public] == ["dev-1"]
    assert not {"node", "local_id", "details", "drained", "driver"} & set(public[0])
    assert "10.0.0.1" not in json.dumps(public) and "numa" not in json.dumps(public)
    assert pool.client.post("/v1/devices/dev-2/undrain", headers=pool.admin).json()["drained"] is False
    assert len(pool.client.get("/v1/devices", headers=pool.b).json()) == 2
    missing = pool.client.post("/v1/devices/nope/drain", headers=pool.admin)
    assert missing.status_code == 404 and detail(missing) == "device nope not found"


# Executables.


def test_upload_raw_or_multipart_list_get_and_download(pool):
    multipart = pool.client.post("/v1/executables?name=mine", headers=pool.a, files={"file": ("m.hamr", pool.hamr_b)})
    assert multipart.status_code == 201, multipart.text
    record = multipart.json()
    assert record["name"] == "mine" and record["targets"] == ["cpu"] and record["size"] == len(pool.hamr_b)
    assert [e["id"] for e in pool.client.get("/v1/executables", headers=pool.a).json()] == [pool.exe_a, record["id"]]
    assert pool.client.get(f"/v1/executables/{record['id']}", headers=pool.a).json() == record
    download = pool.client.get(f"/v1/executables/{pool.exe_a}/file", headers=pool.a)
    assert download.status_code == 200 and download.content == pool.hamr_a
    assert hamr.load(download.content).targets == ["cpu"]
    assert len(pool.client.get("/v1/executables", headers=pool.admin).json()) == 3


@pytest.mark.parametrize("corrupt", ["truncated", "flipped", "foreign", "empty"])
def test_a_corrupt_executable_is_400_with_the_registrys_line(pool, corrupt):
    data = {
        "truncated": pool.hamr_a[: len(pool.hamr_a) // 2],
        "flipped": pool.hamr_a[:-10] + bytes(b ^ 0xFF for b in pool.hamr_a[-10:]),
        "foreign": b"PK\x03\x04 not a hamr file",
        "empty": b"",
    }[corrupt]
    response = pool.client.post("/v1/executables", headers=pool.a, content=data)
    assert response.status_code == 400, response.text
    assert detail(response)
    assert len(pool.registry.list_executables(ANY_TENANT)) == 2


def test_bodies_over_the_limit_are_413_declared_or_streamed(pool):
    big = b"\0" * (MAX_UPLOAD + 1)
    declared = pool.client.post("/v1/executables", headers=pool.a, content=big)
    assert declared.status_code == 413 and "1,048,576" in detail(declared)
    streamed = pool.client.post("/v1/executables", headers=pool.a, content=iter([big[:1000], big[1000:]]))
    assert streamed.status_code == 413, streamed.text
    files = {"x": ("x.npy", npy(np.zeros(MAX_UPLOAD // 4 + 10, np.float32)))}
    job = pool.client.post("/v1/jobs", headers=pool.a, data={"executable_id": str(pool.exe_a)}, files=files)
    assert job.status_code == 413
    assert len(pool.registry.list_jobs(ANY_TENANT)) == 2


def test_an_admin_token_without_a_tenant_cannot_own_uploads(pool):
    response = pool.client.post("/v1/executables", headers=pool.admin, content=pool.hamr_a)
    assert response.status_code == 403 and "tenant" in detail(response)


# Jobs.


def test_a_submitted_job_is_queued_and_the_outputs_the_registry_records_download_as_npy(pool):
    """The service's side only: the job is moved through its states here, by the registry calls a node makes
    (running it for real is test_pool_dispatcher.py's and test_pool_cli.py's)."""
    x = np.array([1.5, -2.0], np.float32)
    response = pool.submit(pool.a, pool.exe_a, {"x": npy(x)}, priority=3)
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["state"], job["inputs"], job["outputs"], job["priority"]) == ("queued", ["x"], [], 3)
    np.testing.assert_array_equal(pool.registry.job_inputs(ANY_TENANT, job["id"])["x"], x)
    not_yet = pool.client.get(f"/v1/jobs/{job['id']}/outputs/y", headers=pool.a)
    assert not_yet.status_code == 404 and "state queued" in detail(not_yet)
    pool.registry.schedule_job(ANY_TENANT, job["id"], ["dev-1"])  # as a node's dispatcher would
    pool.registry.start_job(ANY_TENANT, job["id"])
    pool.registry.finish_job(ANY_TENANT, job["id"], {"y": np.maximum(x, 0)})
    status = pool.client.get(f"/v1/jobs/{job['id']}", headers=pool.a).json()
    assert (status["state"], status["outputs"], status["attempts"]) == ("succeeded", ["y"], 1)
    output = pool.client.get(f"/v1/jobs/{job['id']}/outputs/y", headers=pool.a)
    np.testing.assert_array_equal(np.load(io.BytesIO(output.content), allow_pickle=False), [1.5, 0.0])
    states = pool.client.get("/v1/jobs?state=succeeded", headers=pool.a).json()
    assert [j["id"] for j in states] == [job["id"]]


def test_cancel_and_a_transition_the_state_machine_refuses(pool):
    response = pool.client.post(f"/v1/jobs/{pool.job_a}/cancel", headers=pool.a)
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    again = pool.client.post(f"/v1/jobs/{pool.job_a}/cancel", headers=pool.a)
    assert again.status_code == 409 and "cancelled is final" in detail(again)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x93NUMPY", b"\x93NUMPY\x01\x00garbage", b"not npy at all", "pickled", "npz", "truncated"],
    ids=["empty", "magic-only", "bad-header", "no-magic", "pickled", "npz", "truncated"],
)
def test_a_malformed_npy_input_is_400(pool, payload):
    if payload == "pickled":
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        payload = buffer.getvalue()
    elif payload == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, x=np.zeros(2))
        payload = buffer.getvalue()
    elif payload == "truncated":
        payload = npy(np.zeros(100))[:-8]
    response = pool.submit(pool.a, pool.exe_a, {"x": payload})
    assert response.status_code == 400, response.text
    assert "input 'x'" in detail(response)
    assert len(pool.registry.list_jobs(ANY_TENANT)) == 2


def test_job_form_fields_are_validated(pool):
    assert pool.submit(pool.a, pool.exe_a, n_devices=0).status_code == 422
    assert pool.submit(pool.a, 999).status_code == 404
    unknown = pool.client.post(
        "/v1/jobs", headers=pool.a, data={"executable_id": "1", "bogus": "1"}, files={"x": ("x", b"")}
    )
    assert unknown.status_code == 400 and "unknown field 'bogus'" in detail(unknown)
    raw = pool.client.post("/v1/jobs", headers=pool.a, content=b"{}")
    assert raw.status_code == 400 and "multipart" in detail(raw)


# Tenant isolation: another tenant's objects are 404, exactly as ids that do not exist.

MISSING = 987654


def _isolation_cases(p: Pool):
    """(method, route) -> (the path for tenant b's object, the path for a missing id, substituted id)."""
    exe, job = p.exe_b, p.job_b
    return {
        ("GET", "/v1/executables/{executable_id}"): ("GET", "/v1/executables/{}", exe),
        ("GET", "/v1/executables/{executable_id}/file"): ("GET", "/v1/executables/{}/file", exe),
        ("GET", "/v1/jobs/{job_id}"): ("GET", "/v1/jobs/{}", job),
        ("GET", "/v1/jobs/{job_id}/outputs/{name}"): ("GET", "/v1/jobs/{}/outputs/y", job),
        ("GET", "/v1/jobs/{job_id}/inputs/{name}"): ("GET", "/v1/jobs/{}/inputs/x", job),
        ("GET", "/v1/jobs/{job_id}/placements"): ("GET", "/v1/jobs/{}/placements", job),
        ("POST", "/v1/jobs/{job_id}/cancel"): ("POST", "/v1/jobs/{}/cancel", job),
        ("GET", "/v1/deployments/{deployment_id}"): ("GET", "/v1/deployments/{}", p.deployment_b),
        ("PATCH", "/v1/deployments/{deployment_id}"): (
            "PATCH",
            "/v1/deployments/{}",
            p.deployment_b,
            {"json": {"replicas": 5}},
        ),
        ("DELETE", "/v1/deployments/{deployment_id}"): ("DELETE", "/v1/deployments/{}", p.deployment_b),
        ("POST", "/v1/deployments/{deployment_id}/infer"): (
            "POST",
            "/v1/deployments/{}/infer?wait=0",
            p.deployment_b,
            {"content": b"x", "headers": {"Content-Type": "application/x-hamr-tensors"}},
        ),
        # Devices belong to the pool, not to a tenant: changing them is admin-only.
        ("POST", "/v1/devices/{uuid}/drain"): ("POST", "/v1/devices/{}/drain", "dev-1"),
        ("POST", "/v1/devices/{uuid}/undrain"): ("POST", "/v1/devices/{}/undrain", "dev-1"),
        # Tenants' limits are the admins' to set.
        ("PATCH", "/v1/tenants/{tenant_id}"): ("PATCH", "/v1/tenants/{}", 2, {"json": {"max_priority": 1000}}),
        # Remote agents' routes: admin or the node's agent token (hamr agent); the node is the pool's, not a tenant's.
        ("POST", "/v1/agents/{node}/tokens"): ("POST", "/v1/agents/{}/tokens", "node-1"),
        ("POST", "/v1/agents/{node}/heartbeat"): ("POST", "/v1/agents/{}/heartbeat", "node-1"),
        ("POST", "/v1/agents/{node}/work"): ("POST", "/v1/agents/{}/work", "node-1"),
        ("POST", "/v1/agents/{node}/results"): ("POST", "/v1/agents/{}/results", "node-1"),
        ("GET", "/v1/agents/{node}/requests/{request_id}"): ("GET", "/v1/agents/{}/requests/1", "node-1"),
        ("POST", "/v1/agents/{node}/requests/{request_id}"): (
            "POST",
            "/v1/agents/{}/requests/1",
            "node-1",
            {"json": {"error": "x"}},
        ),
    }


ADMIN_ONLY_ID_ROUTES = {
    "/v1/devices/{uuid}/drain",
    "/v1/devices/{uuid}/undrain",
    "/v1/agents/{node}/tokens",
    "/v1/tenants/{tenant_id}",
    "/v1/agents/{node}/heartbeat",
    "/v1/agents/{node}/work",
    "/v1/agents/{node}/results",
    "/v1/agents/{node}/requests/{request_id}",
}


def test_every_route_that_takes_an_id_has_an_isolation_case(tmp_path):
    with open_registry(data_dir=tmp_path) as registry:
        routes = {(m, path) for m, path in api_routes(create_app(registry)) if "{" in path}
    fake = Pool(*([None] * 5), 1, 2, 3, 4, b"", b"")
    assert routes == set(_isolation_cases(fake))


def test_another_tenants_objects_are_404_exactly_like_missing_ones(pool):
    pool.registry.schedule_job(ANY_TENANT, pool.job_b, ["dev-1"])
    pool.registry.start_job(ANY_TENANT, pool.job_b)
    pool.registry.finish_job(ANY_TENANT, pool.job_b, {"y": np.zeros(2, np.float32)})
    job_b = pool.client.get(f"/v1/jobs/{pool.job_b}", headers=pool.b).json()
    deployment_b = pool.client.get(f"/v1/deployments/{pool.deployment_b}", headers=pool.b).json()
    for (_method, route), (verb, template, own, *extra) in _isolation_cases(pool).items():
        kwargs = extra[0] if extra else {}
        headers = pool.a | kwargs.get("headers", {})
        kwargs = {k: v for k, v in kwargs.items() if k != "headers"}
        theirs = pool.client.request(verb, template.format(own), headers=headers, **kwargs)
        missing = pool.client.request(verb, template.format(MISSING), headers=headers, **kwargs)
        if route in ADMIN_ONLY_ID_ROUTES:
            assert theirs.status_code == missing.status_code == 403, route
            continue
        assert theirs.status_code == missing.status_code == 404, (route, theirs.text, missing.text)
        assert detail(theirs).replace(str(own), "ID") == detail(missing).replace(str(MISSING), "ID"), route
        own_path = template.format(own).split("?")[0].removesuffix("/cancel").removesuffix("/infer")
        owner = pool.client.get(own_path, headers=pool.b)
        assert owner.status_code == 200, route  # the owner still sees it
    assert pool.client.get(f"/v1/jobs/{pool.job_b}", headers=pool.b).json() == job_b  # nothing changed
    assert pool.client.get(f"/v1/deployments/{pool.deployment_b}", headers=pool.b).json() == deployment_b
    assert not pool.registry.get_device("dev-1").drained
    assert pool.submit(pool.a, pool.exe_b).status_code == 404  # b's executable, in a's job


def test_lists_show_only_the_tenants_own_objects(pool):
    assert [e["id"] for e in pool.client.get("/v1/executables", headers=pool.a).json()] == [pool.exe_a]
    assert [j["id"] for j in pool.client.get("/v1/jobs", headers=pool.a).json()] == [pool.job_a]
    assert [j["id"] for j in pool.client.get("/v1/jobs", headers=pool.b).json()] == [pool.job_b]
    assert [j["id"] for j in pool.client.get("/v1/jobs", headers=pool.admin).json()] == [pool.job_a, pool.job_b]


# Malformed requests never get a 500.

BAD_IDS = ["abc", "0", "-1", str(2**40), str(2**70), "1.5", "%00", "x" * 300, "%F0%9F%92%A9"]
BAD_BODIES = [
    {"content": b""},
    {"content": b"garbage", "headers": {"Content-Type": "application/json"}},
    {"content": b"{", "headers": {"Content-Type": "application/json"}},
    {"json": {"node": 5, "devices": "x", "name": ["x"], "max_devices": -1}},
    {"json": {"node": "n", "devices": [{"uuid": "u", "memory_total": 10**30}]}},
    {"json": [1, 2]},
    {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
    {"content": b"abc", "headers": {"Content-Type": "multipart/form-data"}},
    {"files": {"file": ("f", b"\x93NUMPY junk")}, "data": {"executable_id": "abc"}},
    {"files": {"executable_id": ("f", b"1")}},
    {"data": {"executable_id": str(2**40)}, "files": {"x": ("x", b"")}},
    {"content": b"\x00" * 64, "headers": {"Content-Type": "application/octet-stream"}},
    {
        "json": {
            "name": "t\x00",
            "node": "n",
            "devices": [report("d\x00", vendor="v\x00", details={"k": "\x00"}).to_json()],
        }
    },
    {"json": {"node": "n\x00", "devices": [], "labels": {"\x00": 1}}},
    {"data": {"executable_id": "1"}, "files": {"x\x00": ("x", b"\x93NUMPY")}},
]


def test_malformed_requests_to_every_route_are_client_errors(pool):
    routes = api_routes(pool.client.app)
    assert len(routes) >= 15
    seen = 0
    for method, route in routes:
        paths = [re.sub(r"\{[^}]+\}", bad, route) for bad in BAD_IDS] if "{" in route else [route]
        paths.append(re.sub(r"\{[^}]+\}", "1", route) + "?state=bogus&name=" + "n" * 300)
        paths.append(re.sub(r"\{[^}]+\}", "1", route) + "?name=%00")
        for who in (pool.admin, pool.a, {"Authorization": "Bearer hamr_\x7f"}):
            for path in paths:
                response = pool.client.request(method, path, headers=who)
                assert response.status_code < 500, (method, path, response.text)
                seen += 1
            for body in BAD_BODIES:
                path = re.sub(r"\{[^}]+\}", "1", route)
                kwargs = dict(body, headers=who | body.get("headers", {}))
                response = pool.client.request(method, path, **kwargs)
                assert response.status_code < 500, (method, path, body, response.text)
                if response.status_code >= 400:
                    detail(response)
                seen += 1
    assert seen > 300


# Metrics and the OpenAPI spec.


def test_metrics_count_devices_jobs_and_the_queue(pool):
    pool.registry.schedule_job(ANY_TENANT, pool.job_a, ["dev-1"])
    text = pool.client.get("/metrics").text
    assert 'hamr_devices{health="healthy",kind="cpu"} 1.0' in text
    assert 'hamr_devices{health="healthy",kind="gpu"} 1.0' in text
    assert 'hamr_jobs{state="queued"} 1.0' in text and 'hamr_jobs{state="scheduled"} 1.0' in text
    assert "hamr_queue_length 1.0" in text and "hamr_devices_busy 1.0" in text
    assert "# TYPE hamr_device_busy_seconds_total counter" in text
    pool.registry.add_busy_seconds({"dev-1": 2.5})
    pool.registry.add_busy_seconds({"dev-1": 0.25, "dev-2": 1.0})
    text = pool.client.get("/metrics").text
    assert 'hamr_device_busy_seconds_total{device="dev-1",kind="cpu"} 2.75' in text
    assert 'hamr_device_busy_seconds_total{device="dev-2",kind="gpu"} 1.0' in text
    assert "hamr_deployments 1.0" in text and 'hamr_replicas{state="ready"} 0.0' in text


def test_two_apps_have_metrics_registries_of_their_own(pool, tmp_path):
    with open_registry(data_dir=tmp_path / "other") as other:
        text = TestClient(create_app(other)).get("/metrics").text
    assert "hamr_devices{" not in text and "hamr_queue_length 0.0" in text


def test_the_committed_openapi_spec_is_current(pool):
    served = pool.client.get("/openapi.json").json()
    assert set(served["paths"]) >= {
        "/v1/nodes",
        "/v1/devices",
        "/v1/executables",
        "/v1/jobs",
        "/v1/tenants",
        "/metrics",
    }
    committed = service_openapi.DOCS_SPEC.read_text()
    assert json.loads(committed) == served
    assert committed == service_openapi.spec_text(), "docs/openapi.json is stale: python -m hamr.pool.service.openapi"


def test_a_waiting_get_answers_when_the_job_is_final_or_after_wait(pool):
    import threading

    start = time.monotonic()
    queued = pool.client.get(f"/v1/jobs/{pool.job_a}?wait=0.3", headers=pool.a)
    assert queued.json()["state"] == "queued" and time.monotonic() - start >= 0.3

    def finish():
        time.sleep(0.2)
        pool.registry.schedule_job(ANY_TENANT, pool.job_a, ["dev-1"], start=True)
        pool.registry.finish_job(ANY_TENANT, pool.job_a, {"y": np.zeros(2, np.float32)}, attempt=1)

    start = time.monotonic()
    threading.Thread(target=finish).start()
    done = pool.client.get(f"/v1/jobs/{pool.job_a}?wait=30", headers=pool.a)
    assert done.json()["state"] == "succeeded" and 0.2 <= time.monotonic() - start < 5
    assert pool.client.get(f"/v1/jobs/{pool.job_a}?wait=61", headers=pool.a).status_code == 422


def test_an_admission_gate_hands_its_slot_to_a_waiter_on_another_event_loop_and_skips_a_cancelled_one():
    import asyncio

    from hamr.pool.service.admission import Gate

    gate = Gate(limit=1, queue=2)
    order: list[str] = []

    async def take(name: str, hold: float) -> None:
        assert await gate.enter()
        order.append(name)
        await asyncio.sleep(hold)
        gate.leave()

    async def until(what: str, check) -> None:  # a wait on the gate's state, not on the clock
        for _ in range(2000):
            if check():
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"timed out waiting for {what}")

    other = threading.Thread(target=lambda: asyncio.run(take("other loop", 0)))

    async def first_then_a_cancelled_waiter() -> None:
        assert await gate.enter()
        order.append("first")
        cancelled = asyncio.create_task(take("cancelled", 0))
        await until("the second waiter to queue", lambda: len(gate.waiters) == 1)
        cancelled.cancel()  # it waits in the queue, then gives up: its turn must go on to the next
        await until("the cancelled waiter to leave the queue", lambda: len(gate.waiters) == 0)
        other.start()
        await until("the other loop's waiter to queue", lambda: len(gate.waiters) == 1)
        gate.leave()

    asyncio.run(first_then_a_cancelled_waiter())
    other.join(timeout=5)
    assert not other.is_alive() and order == ["first", "other loop"]
    assert (gate.running, len(gate.waiters)) == (0, 0)
    assert asyncio.run(_full(Gate(limit=0, queue=0))) is False  # no room and no queue: refused at once


async def _full(gate) -> bool:
    return await gate.enter()
