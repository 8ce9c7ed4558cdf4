"""Malformed requests against a real `hamr pool up` (issue 11, item 5): each is a 4xx with one JSON
line, the kept-alive connection that carried it serves the next request, and nothing stored is lost.

Before the fix each of these was a 500 that dropped the connection: the tensors header parsed
with the standard library (deep nesting: RecursionError; lone surrogates: the 400 handler
failed to encode its own line), shapes multiplied in int64 (wrapping to 0) or given to numpy
unchecked (OverflowError, `true` as a dimension, more than 64 dimensions), and a heartbeat's
free-form labels and device fields stored a lone surrogate that no answer could encode.
"""

from __future__ import annotations

import http.client
import json
import re
import struct
from urllib.parse import urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hamr.pool.nodes.remote.server import RemoteNodes
from hamr.pool.registry import open_registry
from hamr.pool.service import create_app
from hamr.pool.wire import tensors
from tests.helpers import bearer, mlp_reference
from tests.security.fuzzing import ready_deployment

X = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)


@pytest.fixture(scope="module")
def deployment(real_pool) -> int:
    return ready_deployment(real_pool.alice.client)


def _connection(real_pool) -> http.client.HTTPConnection:
    url = urlsplit(real_pool.url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=60)


def _exchange(conn, method: str, path: str, token: str, body: bytes | None = None, media: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} | ({"Content-Type": media} if media else {})
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.getheader("Connection") or "", response.read()


def _refused_in_one_line(status: int, connection: str, data: bytes) -> str:
    assert 400 <= status < 500, (status, data[:300])
    assert "close" not in connection.lower(), f"a {status} closed the connection"
    body = json.loads(data)
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    assert body["detail"] and "\n" not in body["detail"], body
    return body["detail"]


def _tensors_body(header: bytes) -> bytes:
    """A tensors body with this header, padded so that every declared tensor's bytes lie inside it."""
    prefix = struct.pack("<8sI4x", b"HAMRTNS1", len(header)) + header
    return prefix + b"\0" * (-len(prefix) % 64 + 256)


def _header(**entry) -> bytes:
    return json.dumps(
        {"tensors": [{"name": "x", "dtype": "<f4", "shape": [2, 16], "offset": 0, "nbytes": 128} | entry]}
    ).encode()


MALFORMED_TENSORS = {
    "a deeply nested header": b"[" * 100_000 + b"]" * 100_000,
    "a deeply nested tensors list": b'{"tensors":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a shape whose int64 product wraps to 0": _header(shape=[2**32, 2**32], nbytes=0),
    "a dimension too large for int64": _header(shape=[2**70], nbytes=0),
    "booleans as dimensions": _header(shape=[True, True], nbytes=4),
    "an empty tensor of 65 dimensions": _header(shape=[0] + [1] * 64, nbytes=0),
    "a lone surrogate in a tensor name": b'{"tensors":[{"name":"\\ud800","dtype":"<f4","shape":[2,16],"offset":0,"nbytes":128}]}',
    "a lone surrogate in a bad entry": b'{"tensors":[{"name":"\\udc80","dtype":"|O8","shape":[1],"offset":0,"nbytes":8}]}',
}


@pytest.mark.parametrize("header", list(MALFORMED_TENSORS.values()), ids=list(MALFORMED_TENSORS))
def test_a_malformed_tensors_body_is_a_4xx_and_the_connection_serves_the_next_request(real_pool, deployment, header):
    conn = _connection(real_pool)
    try:
        path = f"/v1/deployments/{deployment}/infer"
        _refused_in_one_line(
            *_exchange(conn, "POST", path, real_pool.alice.token, _tensors_body(header), tensors.MEDIA_TYPE)
        )
        status, _, answer = _exchange(
            conn, "POST", path, real_pool.alice.token, tensors.encode({"x": X}), tensors.MEDIA_TYPE
        )
        assert status == 200, answer[:300]
        np.testing.assert_allclose(tensors.decode(answer)["y"], mlp_reference(X), rtol=1e-5, atol=1e-6)
    finally:
        conn.close()


DEVICE = {
    "uuid": "evil-cpu-0",
    "driver": "cpu",
    "vendor": "Acme",
    "kind": "cpu",
    "architecture": "x86-64",
    "memory_total": 1 << 30,
    "compute_units": 4,
    "targets": ["reference"],
    "local_id": "cpu",
}

MALFORMED_JSON = {
    "a lone surrogate in an agent's labels": (
        "/v1/agents/evil-1/heartbeat",
        b'{"devices":[],"labels":{"rack":"\\udc00"}}',
    ),
    "a lone surrogate in a label's name": ("/v1/agents/evil-2/heartbeat", b'{"devices":[],"labels":{"\\ud800":1}}'),
    "a lone surrogate in a device's vendor": (
        "/v1/agents/evil-3/heartbeat",
        json.dumps({"devices": [DEVICE | {"vendor": "@"}]}).encode().replace(b'"@"', b'"\\udfff"'),
    ),
    "a lone surrogate in a node's labels": (
        "/v1/nodes/heartbeat",
        b'{"node":"evil-4","devices":[],"labels":{"a":["\\ud8ff"]}}',
    ),
}


@pytest.mark.parametrize("path, body", list(MALFORMED_JSON.values()), ids=list(MALFORMED_JSON))
def test_a_json_body_no_answer_could_encode_is_refused_and_not_stored(real_pool, path, body):
    conn = _connection(real_pool)
    try:
        detail = _refused_in_one_line(*_exchange(conn, "POST", path, real_pool.admin_token, body, "application/json"))
        assert "not valid JSON" in detail
        status, _, nodes = _exchange(conn, "GET", "/v1/nodes", real_pool.admin_token)  # what is stored still reads
        assert status == 200, nodes[:300]
        assert not [n for n in json.loads(nodes) if n["name"].startswith("evil-")]
    finally:
        conn.close()


def test_every_json_body_is_parsed_strictly(tmp_path):
    """Each route whose JSON body FastAPI parses refuses a lone surrogate (a router added without
    `route_class=StrictJsonRoute` would store it); in process, every such route of the spec."""
    with open_registry(data_dir=tmp_path / "pool") as registry:
        remote = RemoteNodes(registry)
        app = create_app(registry, remote=remote)
        admin, _ = registry.create_token(None, admin=True)
        client = TestClient(app, raise_server_exceptions=False)
        sent = []
        for path, methods in app.openapi()["paths"].items():
            for method, operation in methods.items():
                if list(operation.get("requestBody", {}).get("content", {})) != ["application/json"]:
                    continue  # no body, or one the route reads itself
                response = client.request(
                    method,
                    re.sub(r"{[^}]+}", "1", path),
                    content=b'{"name":"\\ud800"}',
                    headers=bearer(admin) | {"Content-Type": "application/json"},
                )
                assert response.status_code == 422 and "not valid JSON" in response.json()["detail"], (
                    method,
                    path,
                    response.text,
                )
                sent.append(f"{method} {path}")
        remote.close()
    assert len(sent) >= 5, sent
