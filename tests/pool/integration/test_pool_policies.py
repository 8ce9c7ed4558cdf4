"""`hamr pool up --policy las_perf`: the live pool places jobs with Gavel's allocation, the simulator's own policy
object, and `hamr pool jobs --explain` names it as the reason."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers import hamr_cli, one_error_line
from tests.pool.integration.conftest import in_process_pool
from tests.pool.integration.test_pool_cli import submit_mlp


@pytest.fixture(scope="module")
def las_perf_pool(tmp_path_factory):
    for _, env, _ in in_process_pool(tmp_path_factory, policy="las_perf"):
        yield env


def test_jobs_run_where_the_allocation_puts_them_and_say_so(las_perf_pool, tmp_path):
    env = las_perf_pool
    for rows in (2, 3):  # the second job's executable has a measured rate from the first
        assert "succeeded on" in submit_mlp(env, tmp_path, rows, ["cpu"])
    listed = hamr_cli("pool", "jobs", "--json", "--explain", env=env)
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"]
    reasons = [j["placements"][0]["reason"] for j in jobs]
    assert all(r.startswith("las_perf: allocation (max-min fair") for r in reasons), reasons
    assert all("gives this job 1.00 on " in r for r in reasons), reasons


def test_an_unknown_policy_is_one_error_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAMR_")}
    env.update(HAMR_POOL_DIR=str(tmp_path / "pool"), NO_COLOR="1")
    line = one_error_line(hamr_cli("pool", "up", "--port", "0", "--policy", "fastest", env=env))
    assert "unknown policy 'fastest'" in line and "las_perf" in line and "fgd" in line
