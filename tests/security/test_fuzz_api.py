"""Fuzzing in CI, kept short (issue 11): no request the pool can be sent gets a 5xx, times out or loses its connection.

Schemathesis over docs/openapi.json against a real `hamr pool up`, with the admin token and with a
tenant's; hypothesis's raw tensor bodies, decoded in process and POSTed to a deployment.
bench/fuzz.py runs the same with many more cases.
"""

from __future__ import annotations

import json

import pytest

from tests.security.fuzzing import SPEC, fuzz_api, fuzz_decode, fuzz_infer, ready_deployment

SPEC_OPERATIONS = [
    f"{method.upper()} {path}" for path, methods in json.loads(SPEC.read_text())["paths"].items() for method in methods
]

API_EXAMPLES = 4  # per operation and generation mode (31 operations, 2 modes), per token
BODIES = 100


@pytest.fixture(scope="module")
def deployment(real_pool) -> int:
    """Alice's: the tensor bodies go to it first; then schemathesis, with her token, may scale or delete it."""
    return ready_deployment(real_pool.alice.client)


def test_any_tensor_body_decodes_as_its_header_says_or_is_refused():
    outcomes = fuzz_decode(BODIES * 2)
    assert outcomes["decoded"] and outcomes["refused"]  # the strategies reach both sides


def test_any_tensor_body_posted_to_a_deployment_is_answered_2xx_or_4xx(real_pool, deployment):
    tally = fuzz_infer(real_pool.url, real_pool.alice.token, deployment, BODIES)
    assert not tally.server_errors and not tally.failures, "\n".join(tally.server_errors + tally.failures)
    assert tally.statuses["2xx"] and tally.statuses["4xx"], tally.summary()


@pytest.mark.parametrize("who", ["admin", "tenant"])
def test_schemathesis_finds_no_server_error(real_pool, deployment, who):
    token = real_pool.admin_token if who == "admin" else real_pool.alice.token
    tally = fuzz_api(real_pool.url, token, API_EXAMPLES)
    operations = {label.split(" ", 1)[1] for label in tally.labels}
    assert len(operations) == len(SPEC_OPERATIONS), sorted(
        set(SPEC_OPERATIONS) - operations
    )  # every operation was sent
    assert not tally.server_errors and not tally.failures, "\n".join(tally.server_errors + tally.failures)
    assert real_pool.server.poll() is None, "the pool died"
