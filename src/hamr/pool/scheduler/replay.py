"""Replaying a cluster trace through the scheduler: what a policy would have done.

Used by the benchmarks and tests on the real traces in `../shared/data/` (Gavel's
Philly-derived job traces with per-architecture throughputs; Alibaba's GPU-sharing
cluster trace). Event-driven and non-preemptive: a job arrives, waits in a priority queue,
runs once placed, and releases its devices when done.
"""

from __future__ import annotations

import csv
import heapq
import json
import random
from dataclasses import dataclass
from pathlib import Path

from hamr.pool.scheduler.request import JobRequest
from hamr.pool.scheduler.scheduler import Scheduler
from hamr.pool.scheduler.table import DeviceTable
from hamr.pool.scheduler.throughput import ThroughputModel


@dataclass(frozen=True)
class TraceJob:
    id: str
    kind: str  # Gavel job type, e.g. "ResNet-18 (batch size 16)"
    steps: int
    arrival: float  # seconds
    n_devices: int


def read_gavel_trace(path: Path, limit: int | None = None) -> list[TraceJob]:
    jobs = []
    with open(path) as f:
        for i, line in enumerate(f):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 7:
                raise ValueError(f"{path}:{i + 1}: expected 7 tab-separated fields, found {len(fields)}")
            kind, _cmd, _arg, _data, steps, arrival, scale = fields
            jobs.append(TraceJob(f"j{i}", kind, int(steps), float(arrival), int(scale)))
            if limit is not None and len(jobs) >= limit:
                break
    return jobs


def read_gavel_throughputs(path: Path) -> dict[str, dict[tuple[str, int], float]]:
    """{architecture: {(job type, n devices): steps/s alone}} from simulation_throughputs.json."""
    raw = json.loads(Path(path).read_text())
    table: dict[str, dict[tuple[str, int], float]] = {}
    for arch, entries in raw.items():
        if arch.endswith("_unconsolidated"):
            continue
        for key, value in entries.items():
            kind, n = key.strip("()").rsplit(",", 1)
            table.setdefault(arch, {})[(kind.strip().strip("'\""), int(n))] = float(value["null"])
    return table


def gavel_cluster(counts: dict[str, int], per_node: int = 4, seed: int = 0) -> DeviceTable:
    """Devices of each architecture, registered in a shuffled order (so registration order favours none).
    Each device's target is its architecture: a job runs where its measured rate is above zero, as an
    executable runs where it has a variant (K80s cannot hold ResNet-50 x2, say)."""
    devices = [arch for arch, count in counts.items() for _ in range(count)]
    random.Random(seed).shuffle(devices)
    table = DeviceTable()
    for i, arch in enumerate(devices):
        table.upsert(f"{arch}-{i}", f"node{i // per_node}", arch, [arch], 16 << 30)
    return table


def gang_rate(rates: dict[tuple[str, int], float], kind: str, n: int) -> float:
    """Steps/s of a job of `kind` on n devices of one architecture. The traces hold gang sizes the
    throughput file has no measurement for (Recommendation x4...): those scale the single-device rate
    linearly, the optimistic assumption."""
    if (kind, n) in rates:
        return rates[(kind, n)]
    return rates.get((kind, 1), 0.0) * n


@dataclass
class ReplayResult:
    policy: str
    jobs: int
    average_jct_s: float
    makespan_s: float
    placements_by_arch: dict[str, int]


def replay_gavel(
    jobs: list[TraceJob], throughputs: dict, counts: dict[str, int], policy: str, learn: bool = False
) -> ReplayResult:
    """Average job completion time under `policy`. With `learn`, max_throughput starts knowing nothing and
    learns each (job type, architecture) rate from the jobs that complete, as the pool does from runs;
    otherwise it knows the measured rates up front, as Gavel does."""
    table = gavel_cluster(counts)
    model = ThroughputModel(smoothing=1.0)
    if not learn:
        for arch, rates in throughputs.items():
            for kind, n in {(j.kind, j.n_devices) for j in jobs}:
                model.set(f"{kind}/{n}", arch, gang_rate(rates, kind, n))
    scheduler = Scheduler(table, policy, model)
    pending = sorted(jobs, key=lambda j: j.arrival)
    events: list[tuple[float, int, str, object]] = []  # (time, seq, kind, payload)
    seq = 0
    for job in pending:
        events.append((job.arrival, seq, "arrive", job))
        seq += 1
    heapq.heapify(events)
    queue: list[TraceJob] = []
    passed_over: dict[str, int] = {}
    done: dict[str, float] = {}
    by_arch: dict[str, int] = {}
    now = 0.0
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":
            queue.append(payload)
        else:
            job, decision, request, arch, duration = payload
            scheduler.release(decision, request)
            done[job.id] = now
            if learn:
                model.observe(request.executable, arch, duration / job.steps)
        requests = {}
        for job in queue:
            runs_on = tuple(a for a in counts if gang_rate(throughputs[a], job.kind, job.n_devices) > 0)
            requests[job.id] = JobRequest(
                job.id, "trace", runs_on, executable=f"{job.kind}/{job.n_devices}", n_devices=job.n_devices
            )
        started = {d.job: d for d in scheduler.start_waiting(list(requests.values()), passed_over=passed_over)}
        for job in queue:
            decision = started.get(job.id)
            if decision is None:
                continue
            request = requests[job.id]
            archs = [table.architectures[table.index[d]] for d in decision.devices]
            rate = min(gang_rate(throughputs[a], job.kind, job.n_devices) for a in archs)
            duration = job.steps / rate
            for a in archs:
                by_arch[a] = by_arch.get(a, 0) + 1
            heapq.heappush(events, (now + duration, seq, "finish", (job, decision, request, archs[0], duration)))
            seq += 1
        queue = [job for job in queue if job.id not in started]
    if queue:
        raise ValueError(f"{len(queue)} job(s) never fit the cluster")
    jcts = [done[j.id] - j.arrival for j in jobs]
    return ReplayResult(
        policy, len(jobs), sum(jcts) / len(jcts), max(done.values()) - min(j.arrival for j in jobs), by_arch
    )


def read_alibaba_nodes(path: Path) -> list[dict]:
    with open(path) as f:
        return [row for row in csv.DictReader(f)]


def read_alibaba_pods(path: Path) -> list[dict]:
    with open(path) as f:
        return [row for row in csv.DictReader(f)]


def replay_alibaba(nodes: list[dict], pods: list[dict], policy: str) -> dict:
    """Place GPU pods in creation order with no departures, until the cluster is full; count what fits
    and how many GPUs are left partly used (fragments) versus whole."""
    table = DeviceTable()
    for node in nodes:
        for g in range(int(node["gpu"])):
            table.upsert(f"{node['sn']}/{g}", node["sn"], node["model"], ["cuda"], 1 << 40)
    scheduler = Scheduler(table, policy)
    placed = unplaced = placed_share = 0
    for i, pod in enumerate(sorted(pods, key=lambda p: int(p["creation_time"] or 0))):
        gpus = int(pod["num_gpu"])
        if gpus == 0:
            continue
        share = int(pod["gpu_milli"]) if gpus == 1 else 1000
        decision = scheduler.place(
            JobRequest(pod["name"] or f"p{i}", "trace", ("cuda",), n_devices=gpus, share=max(1, min(share, 1000)))
        )
        if decision.placed:
            placed += 1
            placed_share += len(decision.devices) * max(1, min(share, 1000))
        else:
            unplaced += 1
    used = table.allocated[table.view()]
    return {
        "policy": policy,
        "placed": placed,
        "unplaced": unplaced,
        "gpus": len(table),
        "placed_share": placed_share,
        "allocated_total": int(used.sum()),
        "allocated_max": int(used.max()),
        "gpus_whole_free": int((used == 0).sum()),
        "gpus_partly_used": int(((used > 0) & (used < 1000)).sum()),
    }
