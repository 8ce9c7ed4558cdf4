"""https for the pool: `hamr pool up --tls-cert/--tls-key`, and clients that verify it (the `hamr pool`
commands, `hamr agent --ca`, InferClient), against a pool in this process (PoolServer, as `hamr pool up`
builds it) with a self-signed certificate; the bad options against a real `hamr pool up`."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

import hamr
from hamr.errors import HamrError
from hamr.pool.wire.client import InferClient
from tests.helpers import (
    agent_args,
    finish,
    hamr_cli,
    mlp_model,
    mlp_reference,
    one_error_line,
    spawn,
    start,
    start_pool,
    stop,
    wait_until,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command to make a test certificate")


def certificate(directory, name: str, ip: str = "127.0.0.1"):
    """A self-signed certificate for `ip` and its key: (cert, key)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            f"/CN={ip}",
            "-addext",
            f"subjectAltName=IP:{ip}",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def https_pool(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = certificate(tmp, "pool")
    running = start_pool(tmp, "--tls-cert", cert, "--tls-key", key, ca=cert)
    trusted = {**running.env, "HAMR_CA_FILE": str(cert)}
    wait_until("the https API", lambda: hamr_cli("pool", "status", env=trusted).returncode == 0, 60, every=0.3)
    yield tmp, running.env, trusted, running.url, cert
    running.admin.close()
    log = stop(running.server)
    assert "Traceback" not in log, log


def test_the_pool_serves_https_and_clients_verify_it(https_pool):
    tmp, env, trusted, url, cert = https_pool
    assert url.startswith("https://127.0.0.1:")
    untrusted = one_error_line(hamr_cli("pool", "status", env=env))
    assert "certificate verify failed" in untrusted and "$HAMR_CA_FILE" in untrusted
    other, _ = certificate(tmp, "other")  # a CA that did not sign the pool's certificate
    assert "certificate verify failed" in one_error_line(
        hamr_cli("pool", "status", env={**env, "HAMR_CA_FILE": str(other)})
    )
    missing = one_error_line(hamr_cli("pool", "status", env={**env, "HAMR_CA_FILE": str(tmp / "none.pem")}))
    assert missing == f"error: no CA file {tmp / 'none.pem'} (from --ca or $HAMR_CA_FILE)"

    exe = hamr.compile(mlp_model(), targets=["cpu"]).save(tmp / "mlp.hamr")
    deployed = hamr_cli("pool", "deploy", exe, "--replicas", "1", env=trusted)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    deployment = int(deployed.stdout.split()[1])
    token = (tmp / "pool" / "default.token").read_text().strip()
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    with InferClient(url, token, ca=str(cert)) as client:
        np.testing.assert_allclose(
            client.infer(deployment, {"x": x}, wait=60)["y"], mlp_reference(x), rtol=1e-4, atol=1e-5
        )
    with InferClient(url, token, ca=str(other)) as client, pytest.raises(HamrError, match="certificate verify failed"):
        client.infer(deployment, {"x": x})


def test_an_agent_joins_an_https_pool_with_its_ca_and_refuses_one_it_cannot_verify(https_pool):
    tmp, env, trusted, url, cert = https_pool
    admin = (tmp / "pool" / "admin.token").read_text().strip()
    agent_env = {**env, "HAMR_HOST_ID": "tls-remote"}
    refused = spawn(agent_env, *agent_args(url, admin, "tls-remote", "--start-timeout", "30"))
    message = one_error_line(finish(refused))  # at once: no retry makes an untrusted certificate trusted
    assert "certificate verify failed" in message and "--ca" in message
    options = ("--ca", cert, "--heartbeat", "0.5", "--cache-dir", tmp / "agent")
    agent = start(agent_env, *agent_args(url, admin, "tls-remote", *options))
    try:

        def joined():
            listed = hamr_cli("pool", "status", "--json", env=trusted)
            return listed.returncode == 0 and "tls-remote" in {n["name"] for n in json.loads(listed.stdout)["nodes"]}

        wait_until("the agent to join over https", joined, 60, every=0.5)
    finally:
        log = stop(agent)
    assert "Traceback" not in log, log


def test_bad_tls_options_are_one_line_each(tmp_path):
    cert, key = certificate(tmp_path, "a")
    _, other_key = certificate(tmp_path, "b")
    env = {"HAMR_POOL_DIR": str(tmp_path / "pool")}
    cases = [
        (["--tls-cert", cert], "error: https needs both --tls-cert and --tls-key"),
        (
            ["--tls-cert", tmp_path / "nope.pem", "--tls-key", key],
            f"error: cannot serve https: no such file {tmp_path / 'nope.pem'}",
        ),
        (
            ["--tls-cert", cert, "--tls-key", other_key],
            f"error: cannot serve https with {cert} and {other_key}: KEY_VALUES_MISMATCH",
        ),
    ]
    for options, expected in cases:
        assert one_error_line(hamr_cli("pool", "up", "--port", "0", *options, timeout=60, env=env)) == expected
    assert not (tmp_path / "pool" / "pool.json").exists()
