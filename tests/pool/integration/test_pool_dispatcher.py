"""The dispatcher: queued jobs in a real registry (SQLite; the first two tests on PostgreSQL too) run on
real worker processes, and migrate (a new attempt) when a worker dies or a device is drained, with
exactly one recorded result each."""

from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest

import hamr
from hamr.pool.dispatch.dispatcher import Dispatcher
from hamr.pool.drivers import discover
from hamr.pool.registry import ANY_TENANT, InvalidTransition, StaleAttempt
from tests.helpers import BACKENDS, mlp_model, mlp_reference, registry_for

TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def reports():
    return discover().devices


@pytest.fixture(scope="module")
def cpu_report(reports):
    return next(r for r in reports if r.local_id == "cpu")


@pytest.fixture(scope="module")
def opencl_report(reports):
    return next((r for r in reports if r.local_id == "opencl:0"), None)


@pytest.fixture
def pool(request, tmp_path, exe_bytes):
    """(registry, tenant id, executable record); the registry on SQLite, and on PostgreSQL too where a test
    is parametrised with BACKENDS."""
    with registry_for(request, tmp_path) as registry:
        tenant = registry.create_tenant("acme").id
        yield registry, tenant, registry.upload_executable(tenant, exe_bytes)


def submit(registry, tenant, exe, seed, batch=3):
    x = np.random.default_rng(seed).standard_normal((batch, 16)).astype(np.float32)
    return registry.submit_job(tenant, exe.id, {"x": x}), x


def events(registry, kind, job_id):
    return [e for e in registry.list_events(ANY_TENANT, kind=kind) if e.subject == f"job:{job_id}"]


def placed_on(registry, job_id) -> list[tuple[str, int]]:
    uuids = {d.id: d.local_id for d in registry.list_devices()}
    return [(uuids[p.device_id], p.attempt) for p in registry.list_placements(ANY_TENANT, job_id)]


def assert_one_result(registry, job_id, attempt):
    job = registry.get_job(ANY_TENANT, job_id)
    assert (job.state, job.attempts) == ("succeeded", attempt)
    done = events(registry, "job.succeeded", job_id)
    assert [e.payload["attempt"] for e in done] == [attempt]  # exactly one recorded result, of the last attempt


@pytest.mark.parametrize("pool", BACKENDS, indirect=True)
def test_a_job_runs_to_succeeded_with_numpy_outputs(pool, reports):
    registry, tenant, exe = pool
    jobs = [submit(registry, tenant, exe, seed, batch) for seed, batch in ((1, 2), (2, 5), (3, 1))]
    with Dispatcher(registry, "node-a", reports=reports) as dispatcher:
        dispatcher.run_until_idle(60)
        for job, x in jobs:
            assert_one_result(registry, job.id, 1)
            np.testing.assert_allclose(registry.job_outputs(tenant, job.id)["y"], mlp_reference(x), **TOL)
            (placement,) = registry.list_placements(ANY_TENANT, job.id)
            assert placement.reason.startswith("max_throughput: ")
        # one worker per device, kept; every run fed the throughput model under (sha256, architecture)
        assert len(dispatcher.workers) <= len(reports)
        assert all(w.alive() for w in dispatcher.workers.values())
        used = {registry.get_device(u).architecture for u in dispatcher.workers}
        assert all(dispatcher.throughput.rate(exe.sha256, arch) > 0 for arch in used)
    assert not list((registry.data_dir / "runs" / "node-a").glob("job-*/attempt-*"))  # outputs moved to blobs


@pytest.mark.parametrize("pool", BACKENDS, indirect=True)
def test_a_worker_killed_mid_job_runs_again_with_one_recorded_result(pool, cpu_report):
    registry, tenant, exe = pool
    with Dispatcher(registry, "node-a", reports=[cpu_report]) as dispatcher:
        first, x = submit(registry, tenant, exe, seed=7)
        dispatcher.run_until_idle(60)
        expected = registry.job_outputs(tenant, first.id)["y"]
        worker = dispatcher.worker("cpu", tenant)
        os.kill(worker.pid, signal.SIGSTOP)  # the worker takes the job but never finishes it
        job = registry.submit_job(tenant, exe.id, {"x": x})
        dispatcher.step()
        assert (dispatcher.job_state(job.id), registry.get_job(tenant, job.id).attempts) == ("running", 1)
        os.kill(worker.pid, signal.SIGKILL)
        dispatcher.run_until_idle(60)
        assert dispatcher.workers[cpu_report.uuid].pid != worker.pid  # a new worker, started when needed
    assert_one_result(registry, job.id, 2)
    assert placed_on(registry, job.id) == [("cpu", 1), ("cpu", 2)]
    (requeued,) = events(registry, "job.requeued", job.id)
    assert requeued.payload["attempt"] == 1 and "worker died" in requeued.payload["reason"]
    y = registry.job_outputs(tenant, job.id)["y"]
    np.testing.assert_array_equal(y, expected)  # the same device and executable: identical outputs
    np.testing.assert_allclose(y, mlp_reference(x), **TOL)


@pytest.mark.opencl
def test_a_dead_worker_on_a_device_now_unhealthy_moves_its_job_to_opencl(pool, cpu_report, opencl_report):
    registry, tenant, exe = pool
    with Dispatcher(registry, "node-a", reports=[cpu_report, opencl_report]) as dispatcher:
        dispatcher.throughput.set(exe.sha256, cpu_report.architecture, 1000.0)  # cpu first while it is healthy
        dispatcher.throughput.set(exe.sha256, opencl_report.architecture, 1.0)
        worker = dispatcher.worker("cpu", tenant)
        os.kill(worker.pid, signal.SIGSTOP)
        job, x = submit(registry, tenant, exe, seed=11)
        dispatcher.step()
        assert placed_on(registry, job.id) == [("cpu", 1)]
        dispatcher.heartbeat([dataclasses.replace(cpu_report, health="unhealthy"), opencl_report])
        os.kill(worker.pid, signal.SIGKILL)
        dispatcher.run_until_idle(60)
    assert_one_result(registry, job.id, 2)
    assert placed_on(registry, job.id) == [("cpu", 1), ("opencl:0", 2)]
    np.testing.assert_allclose(registry.job_outputs(tenant, job.id)["y"], mlp_reference(x), **TOL)


@pytest.mark.opencl
def test_draining_the_cpu_moves_its_running_and_queued_jobs_to_opencl(pool, cpu_report, opencl_report):
    registry, tenant, exe = pool
    with Dispatcher(registry, "node-a", reports=[cpu_report, opencl_report]) as dispatcher:
        dispatcher.throughput.set(exe.sha256, cpu_report.architecture, 1000.0)
        dispatcher.throughput.set(exe.sha256, opencl_report.architecture, 1.0)
        worker = dispatcher.worker("cpu", tenant)
        os.kill(worker.pid, signal.SIGSTOP)  # the cpu's job stays running until the drain
        jobs = [submit(registry, tenant, exe, seed) for seed in (21, 22, 23)]
        (j1, _), (j2, _), (j3, _) = jobs
        dispatcher.step()
        assert placed_on(registry, j1.id) == [("cpu", 1)] and dispatcher.job_state(j1.id) == "running"
        assert placed_on(registry, j2.id) == [("opencl:0", 1)]
        assert dispatcher.job_state(j3.id) == "queued" and dispatcher.reasons[j3.id].startswith("waiting: ")
        registry.set_drained(cpu_report.uuid)
        dispatcher.step()  # j1 requeued off the drained cpu; the worker's late reply will be discarded
        os.kill(worker.pid, signal.SIGCONT)
        dispatcher.run_until_idle(60)
        assert worker.alive()  # the drained device's worker was not killed, only no longer waited for
    for job, x in jobs:
        np.testing.assert_allclose(registry.job_outputs(tenant, job.id)["y"], mlp_reference(x), **TOL)
    assert_one_result(registry, j1.id, 2)
    assert_one_result(registry, j2.id, 1)
    assert_one_result(registry, j3.id, 1)
    assert placed_on(registry, j1.id) == [("cpu", 1), ("opencl:0", 2)]
    assert placed_on(registry, j3.id) == [("opencl:0", 1)]
    (requeued,) = events(registry, "job.requeued", j1.id)
    assert "drained" in requeued.payload["reason"]
    (discarded,) = events(registry, "job.result_discarded", j1.id)
    assert discarded.payload["attempt"] == 1


def test_the_late_result_of_an_old_attempt_is_not_recorded(pool, cpu_report):
    registry, tenant, exe = pool
    registry.heartbeat("node-a", [cpu_report])
    job, _ = submit(registry, tenant, exe, seed=5)
    registry.schedule_job(ANY_TENANT, job.id, [cpu_report.uuid], reason="test")
    registry.start_job(ANY_TENANT, job.id, attempt=1)
    registry.requeue_job(ANY_TENANT, job.id, "migrating", attempt=1)
    registry.schedule_job(ANY_TENANT, job.id, [cpu_report.uuid], reason="test")
    registry.start_job(ANY_TENANT, job.id, attempt=2)
    late, current = {"y": np.zeros(2, np.float32)}, {"y": np.ones(2, np.float32)}
    with pytest.raises(StaleAttempt, match=f"job {job.id}: attempt 1 cannot go to succeeded: the current attempt is 2"):
        registry.finish_job(ANY_TENANT, job.id, late, attempt=1)
    with pytest.raises(StaleAttempt):
        registry.requeue_job(ANY_TENANT, job.id, "worker of attempt 1 died", attempt=1)
    assert (registry.get_job(tenant, job.id).state, registry.get_job(tenant, job.id).outputs) == ("running", {})
    registry.finish_job(ANY_TENANT, job.id, current, attempt=2)
    with pytest.raises(InvalidTransition):
        registry.finish_job(ANY_TENANT, job.id, late, attempt=2)  # a duplicate reply of the same attempt
    np.testing.assert_array_equal(registry.job_outputs(tenant, job.id)["y"], current["y"])
    assert_one_result(registry, job.id, 2)


def test_a_job_with_no_variant_for_any_device_waits_with_the_schedulers_reason(registry, cpu_report, tmp_path):
    tenant = registry.create_tenant("acme").id
    opencl_only = hamr.compile(mlp_model(), targets=["opencl"]).save(tmp_path / "cl.hamr").read_bytes()
    exe = registry.upload_executable(tenant, opencl_only)
    job, _ = submit(registry, tenant, exe, seed=3)
    with Dispatcher(registry, "node-a", reports=[cpu_report]) as dispatcher:
        dispatcher.run_until_idle(10)
        dispatcher.run_until_idle(10)
        assert dispatcher.workers == {}
    assert registry.get_job(tenant, job.id).state == "queued"
    reason = dispatcher.reasons[job.id]
    assert reason.startswith(
        "waiting: needs 1 device(s), 0 fit. Of 1: 1 healthy and not drained, 0 of those run opencl"
    )
    assert [e.payload["reason"] for e in events(registry, "job.waiting", job.id)] == [reason]  # logged once


# Gang jobs: the batch split across the gang's devices, the outputs joined back.


@pytest.mark.opencl
def test_a_gang_job_splits_its_batch_over_cpu_and_opencl_and_joins_the_outputs(pool, cpu_report, opencl_report):
    registry, tenant, exe = pool
    x = np.random.default_rng(21).standard_normal((5, 16)).astype(np.float32)
    job = registry.submit_job(tenant, exe.id, {"x": x}, n_devices=2)
    with Dispatcher(registry, "node-a", reports=[cpu_report, opencl_report]) as dispatcher:
        dispatcher.run_until_idle(120)
    assert_one_result(registry, job.id, 1)
    assert sorted(placed_on(registry, job.id)) == [("cpu", 1), ("opencl:0", 1)]  # both devices, one attempt
    y = registry.job_outputs(tenant, job.id)["y"]
    assert y.shape == (5, 24)
    np.testing.assert_allclose(y, mlp_reference(x), **TOL)  # rows 0-2 from one device, 3-4 from the other


@pytest.mark.opencl
def test_a_gang_shard_whose_worker_dies_runs_the_whole_attempt_again(pool, cpu_report, opencl_report):
    registry, tenant, exe = pool
    x = np.random.default_rng(22).standard_normal((4, 16)).astype(np.float32)
    with Dispatcher(registry, "node-a", reports=[cpu_report, opencl_report]) as dispatcher:
        worker = dispatcher.worker("opencl:0", tenant)
        os.kill(worker.pid, signal.SIGSTOP)  # its shard is taken but never finished
        job = registry.submit_job(tenant, exe.id, {"x": x}, n_devices=2)
        dispatcher.step()
        assert registry.get_job(tenant, job.id).state == "running"
        os.kill(worker.pid, signal.SIGKILL)
        dispatcher.run_until_idle(120)
    assert_one_result(registry, job.id, 2)
    assert sorted(placed_on(registry, job.id)) == [("cpu", 1), ("cpu", 2), ("opencl:0", 1), ("opencl:0", 2)]
    np.testing.assert_allclose(registry.job_outputs(tenant, job.id)["y"], mlp_reference(x), **TOL)
    (requeued,) = events(registry, "job.requeued", job.id)
    assert "worker died" in requeued.payload["reason"]


def test_a_gang_job_whose_batch_cannot_be_split_fails_with_the_reason(pool, cpu_report):
    registry, tenant, exe = pool
    second = dataclasses.replace(cpu_report, uuid=cpu_report.uuid + "-2", local_id="cpu")
    job = registry.submit_job(tenant, exe.id, {"x": np.ones((1, 16), np.float32)}, n_devices=2)
    with Dispatcher(registry, "node-a", reports=[cpu_report, second]) as dispatcher:
        dispatcher.run_until_idle(60)
    record = registry.get_job(tenant, job.id)
    assert record.state == "failed"
    assert record.error == "a gang job of 2 devices needs a batch of at least 2 rows; its inputs have 1"


def test_split_and_merge_keep_rows_in_order_and_refuse_what_is_not_batch_major():
    from hamr.pool.dispatch.gangs import GangError, merge_outputs, split_inputs

    x = np.arange(7 * 3).reshape(7, 3)
    shards = split_inputs({"x": x, "m": np.ones((7,), bool)}, 3)
    assert [s["x"].shape[0] for s in shards] == [3, 2, 2]
    np.testing.assert_array_equal(merge_outputs([{"y": s["x"] * 2} for s in shards], [3, 2, 2])["y"], x * 2)
    with pytest.raises(GangError, match="one batch size"):
        split_inputs({"x": x, "z": np.ones((6, 3))}, 2)
    with pytest.raises(GangError, match="'s' is a scalar"):
        split_inputs({"s": np.float32(1)}, 2)
    with pytest.raises(GangError, match="output 'sum' of shard 0 has a scalar"):
        merge_outputs([{"sum": np.float32(1)}, {"sum": np.float32(2)}], [1, 1])
