"""The simulators' policies in the live pool's scheduler: FGD for shares of a device (jobs and deployment
replicas), Gavel's las_perf allocation for jobs with measured throughputs, each decision naming its reason."""

from __future__ import annotations

from collections import Counter

from hamr.pool.scheduler import DeviceTable, JobRequest, Scheduler, ThroughputModel
from hamr.pool.scheduler.live_nodes import LiveDevice, node_view
from hamr.pool.scheduler.replicas import Candidate, place_replicas

GIB = 1 << 30


def job(i, targets=("cuda",), **kw) -> JobRequest:
    return JobRequest(f"j{i}", "t1", tuple(targets), **kw)


def two_gpus(first_allocated: int) -> DeviceTable:
    t = DeviceTable()
    t.upsert("a/gpu0", "a", "sm_90", ["cuda"], 80 * GIB)
    t.upsert("a/gpu1", "a", "sm_90", ["cuda"], 80 * GIB)
    t.allocate("a/gpu0", first_allocated, 0)
    return t


def test_fgd_keeps_room_for_the_share_jobs_usually_ask_where_binpack_fills_the_fuller_device():
    fgd = Scheduler(two_gpus(300), "fgd")
    fgd.shares = Counter({700: 10})  # jobs of 0.7 of a device are the common kind
    decision = fgd.place(job(1, share=300))
    # on gpu0 the 400 left would fit no 0.7 job; on gpu1, 700 stay: exactly one
    assert decision.devices == ("a/gpu1",)
    assert decision.reason.startswith("fgd: ") and "expected GPU fragmentation" in decision.reason
    assert Scheduler(two_gpus(300), "binpack").place(job(1, share=300)).devices == ("a/gpu0",)


def test_las_perf_sends_each_job_to_the_architecture_its_allocation_favours():
    t = DeviceTable()
    t.upsert("old", "n1", "sm_80", ["cuda"], 40 * GIB)
    t.upsert("new", "n1", "sm_90", ["cuda"], 80 * GIB)
    model = ThroughputModel()
    model.set("memory-bound", "sm_80", 100.0)  # as fast on either GPU
    model.set("memory-bound", "sm_90", 100.0)
    model.set("compute-bound", "sm_80", 10.0)  # 4x faster on the newer one
    model.set("compute-bound", "sm_90", 40.0)
    s = Scheduler(t, "las_perf", model)
    queue = [job(1, executable="memory-bound"), job(2, executable="compute-bound"), job(3, executable="compute-bound")]
    placed = {d.job: d for d in s.start_waiting(queue, ranked=True)}
    # max-min fair: the memory-bound job loses nothing on the older GPU and leaves the newer to those gaining 4x
    # (X = [[5/6, 0], [0, .52], [1/6, .48]]); the third job waits
    assert set(placed) == {"j1", "j2"}
    assert placed["j1"].devices == ("old",) and placed["j2"].devices == ("new",)
    assert (
        placed["j1"].reason.startswith("las_perf: allocation")
        and "gives this job 0.83 on sm_80;" in placed["j1"].reason
    )


def test_las_perf_gives_a_free_device_to_a_waiting_job_rather_than_leave_it_idle():
    t = DeviceTable()
    t.upsert("new", "n1", "sm_90", ["cuda"], 80 * GIB)
    t.upsert("cpu", "n1", "x86-64", ["cpu"], 64 * GIB)
    model = ThroughputModel()
    model.set("exe", "sm_90", 50.0)
    model.set("exe", "x86-64", 5.0)
    s = Scheduler(t, "las_perf", model)
    decisions = s.start_waiting([job(i, targets=("cuda", "cpu"), executable="exe") for i in range(2)], ranked=True)
    assert sorted(d.devices[0] for d in decisions) == ["cpu", "new"]


def test_las_perf_treats_unmeasured_jobs_alike_everywhere_they_run():
    t = two_gpus(0)
    s = Scheduler(t, "las_perf", ThroughputModel())
    archs, x, counts = s.allocation([job(1), job(2)])
    assert archs == ["sm_90"] and counts == [2]
    assert x[:, 0].tolist() == [1.0, 1.0]


def test_a_node_of_more_than_eight_devices_is_cut_into_parts():
    devices = [LiveDevice(i, "big", "gfx942", 0) for i in range(10)]
    nodes, where = node_view(devices)
    assert list(nodes.gpu_count) == [8, 2] and len(where) == 10


def test_a_replica_of_a_share_goes_where_fragmentation_grows_least_once_spread_ties():
    candidates = [
        Candidate("g1", "cuda:0", "n1", "gpu", "sm_90", ("cuda",), reserved=400),
        Candidate("g2", "cuda:1", "n1", "gpu", "sm_90", ("cuda",)),
    ]
    placed, short = place_replicas(candidates, [], 1, ("cuda",), share=600, shares=Counter({600: 5}))
    # g1's 600 left take it exactly; on g2 the 400 left would fit no 0.6 replica (least reserved would pick g2)
    assert [p.device for p in placed] == ["g1"] and short == ""
    assert "fgd score" in placed[0].reason
    whole, _ = place_replicas(candidates, [], 1, ("cuda",), share=1000)
    assert whole[0].device == "g2" and "fgd" not in whole[0].reason
