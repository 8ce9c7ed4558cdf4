"""The pool's scheduler: filters, binpack, spread, max_throughput, gangs, quotas, priorities; and replays
of the real traces in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from hamr.pool.scheduler import DeviceTable, JobRequest, Scheduler, ThroughputModel
from hamr.pool.scheduler.replay import (
    read_alibaba_nodes,
    read_alibaba_pods,
    read_gavel_throughputs,
    read_gavel_trace,
    replay_alibaba,
    replay_gavel,
)
from hamr.pool.scheduler.request import TenantLimits

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared traces are not at {DATA}")
GIB = 1 << 30


def small_pool() -> DeviceTable:
    """Two nodes: a has two GPUs (cuda) and its CPU; b has one GPU and one OpenCL accelerator."""
    t = DeviceTable()
    t.upsert("a/gpu0", "a", "sm_90", ["cuda"], 80 * GIB)
    t.upsert("a/gpu1", "a", "sm_90", ["cuda"], 80 * GIB)
    t.upsert("a/cpu", "a", "x86-64-v4", ["cpu", "reference"], 200 * GIB)
    t.upsert("b/gpu0", "b", "sm_80", ["cuda"], 40 * GIB)
    t.upsert("b/cl0", "b", "gfx942", ["opencl"], 192 * GIB)
    return t


def job(i, targets=("cuda",), **kw) -> JobRequest:
    return JobRequest(f"j{i}", kw.pop("tenant", "t1"), tuple(targets), **kw)


def test_binpack_fills_a_device_before_opening_another():
    s = Scheduler(small_pool(), "binpack")
    first = s.place(job(1, share=500))
    second = s.place(job(2, share=500))
    third = s.place(job(3, share=500))
    assert first.devices == second.devices  # the half-used device is filled first
    assert third.devices != first.devices
    assert s.table.nodes[s.table.index[third.devices[0]]] == s.table.nodes[s.table.index[first.devices[0]]]


def test_spread_puts_each_job_on_the_least_used_device_and_node():
    s = Scheduler(small_pool(), "spread")
    placed = [s.place(job(i, share=500)).devices[0] for i in range(3)]
    assert len(set(placed)) == 3
    nodes = [p.split("/")[0] for p in placed[:2]]
    assert sorted(nodes) == ["a", "b"]  # the second job goes to the other node


def test_filters_say_why_a_job_waits():
    t = small_pool()
    t.set_health("a/gpu0", False)
    t.set_drained("a/gpu1")
    s = Scheduler(t)
    d = s.place(job(1, memory=60 * GIB))  # b/gpu0 has only 40 GiB
    assert not d.placed
    assert "Of 5: 3 healthy and not drained, 1 of those run cuda, 0 of those have" in d.reason
    ok = s.place(job(2, memory=30 * GIB))
    assert ok.devices == ("b/gpu0",) and ok.targets == ("cuda",)


def test_the_target_follows_the_jobs_preference_and_what_the_device_runs():
    s = Scheduler(small_pool(), "spread")
    d = s.place(job(1, targets=("opencl", "cpu", "reference"), n_devices=2))
    assert dict(zip(d.devices, d.targets)) == {"b/cl0": "opencl", "a/cpu": "cpu"}


def test_a_gang_is_all_or_nothing_and_stays_on_one_node_and_architecture():
    t = small_pool()
    s = Scheduler(t, "binpack")
    gang = s.place(job(1, n_devices=2))
    assert sorted(gang.devices) == ["a/gpu0", "a/gpu1"]  # not a/gpu0 + b/gpu0 (sm_90 with sm_80)
    too_big = s.place(job(2, n_devices=2))  # only b/gpu0 is left
    assert not too_big.placed and "needs 2 device(s), 1 fit" in too_big.reason
    assert t.allocated[t.index["b/gpu0"]] == 0  # nothing was taken by the refused gang
    s.release(gang, job(1, n_devices=2))
    assert s.place(job(3, n_devices=2)).placed


def test_max_throughput_uses_what_was_measured_per_architecture():
    model = ThroughputModel()
    s = Scheduler(small_pool(), "max_throughput", model)
    unmeasured = s.place(job(1, executable="exe", share=100), commit=False)
    assert "no throughput measured yet" in unmeasured.reason
    for _ in range(3):
        model.observe("exe", "sm_80", 0.010)  # 100 runs/s on the older GPU (a memory-bound model)
        model.observe("exe", "sm_90", 0.020)  # 50 runs/s
    d = s.place(job(2, executable="exe", share=100))
    assert d.devices == ("b/gpu0",) and "sm_80 100/s" in d.reason
    other = s.place(job(3, executable="other"), commit=False)  # another executable: nothing learned
    assert "no throughput measured yet" in other.reason


def test_quotas_and_priorities():
    s = Scheduler(small_pool())
    limits = {"t1": TenantLimits(max_devices=1), "t2": TenantLimits(max_running_jobs=1)}
    assert s.place(job(1), limits["t1"]).placed
    refused = s.place(job(2), limits["t1"])
    assert not refused.placed and refused.reason.startswith("quota: tenant t1 uses 1 of 1 devices")
    queue = [job(3, tenant="t2", priority=0), job(4, tenant="t2", priority=5)]
    decisions = s.schedule(queue, limits)
    assert [d.job for d in decisions] == ["j4", "j3"]
    assert decisions[0].placed and decisions[1].reason.startswith("quota: tenant t2 runs 1 of 1 jobs")


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policies: binpack, spread, max_throughput"):
        Scheduler(small_pool(), "random")


@needs_data
def test_max_throughput_beats_binpack_on_the_gavel_traces():
    """Philly-derived jobs (150 per trace, six traces) on an 8:8:8 V100/P100/K80 cluster: knowing each
    job type's rate per architecture must shorten the total of the average job completion times."""
    gavel = DATA / "gavel"
    rates = read_gavel_throughputs(gavel / "simulation_throughputs.json")
    counts = {"v100": 8, "p100": 8, "k80": 8}
    traces = sorted((gavel / "traces" / "msr" / "seed=0").glob("*.trace"))[:6]
    agnostic = aware = 0.0
    for trace in traces:
        jobs = [j for j in read_gavel_trace(trace, limit=150) if j.n_devices <= 8]
        binpack = replay_gavel(jobs, rates, counts, "binpack")
        informed = replay_gavel(jobs, rates, counts, "max_throughput")
        assert binpack.jobs == informed.jobs == len(jobs)
        agnostic += binpack.average_jct_s
        aware += informed.average_jct_s
    assert aware < agnostic


@needs_data
@pytest.mark.parametrize("policy", ["binpack", "spread"])
def test_the_alibaba_trace_fills_the_cluster_without_overcommitting(policy):
    """GPU-sharing pods (thousandths of a GPU) and multi-GPU pods on 150 real nodes, until full."""
    ali = DATA / "alibaba-gpu-v2023"
    nodes = read_alibaba_nodes(ali / "openb_node_list_gpu_node.csv")[:150]
    pods = read_alibaba_pods(ali / "openb_pod_list_gpushare100.csv")[:4000]
    result = replay_alibaba(nodes, pods, policy)
    gpu_pods = [p for p in pods if int(p["num_gpu"]) > 0]
    assert result["placed"] + result["unplaced"] == len(gpu_pods)
    assert result["gpus"] == sum(int(n["gpu"]) for n in nodes)
    assert 0 <= result["allocated_max"] <= 1000
    assert result["allocated_total"] == result["placed_share"]  # every placed thousandth is held exactly once
    assert result["gpus_whole_free"] + result["gpus_partly_used"] <= result["gpus"]


def test_fair_order_alternates_tenants_and_puts_the_least_used_first_whatever_the_priority():
    from hamr.pool.scheduler.fairshare import decayed, fair_order

    flood = [job(i, tenant="alice", priority=1000) for i in range(1, 5)]
    queue = flood + [job(5, tenant="bob", priority=0), job(6, tenant="bob", priority=3)]
    # equal usage: they alternate, alice first (her job came first); bob's own priority 3 before his 0
    assert [j.id for j in fair_order(queue)] == ["j1", "j6", "j2", "j5", "j3", "j4"]
    # alice used 10 device-seconds lately: bob's jobs go first
    assert [j.id for j in fair_order(queue, usage={"alice": 10.0})] == ["j6", "j5", "j1", "j2", "j3", "j4"]
    # ... unless her weight is 10 times bob's: 10/10 = 1 s, as one of bob's jobs
    assert [j.id for j in fair_order(queue, {"alice": 10.0}, {"alice": 10.0})] == ["j6", "j1", "j5", "j2", "j3", "j4"]
    assert decayed(8.0, 3600.0) == 4.0 and decayed(8.0, 7200.0) == 2.0
