"""FGD's fragmentation experiment (Weng et al., USENIX ATC 2023) on Alibaba's GPU cluster trace.

As the paper's simulator runs it: the trace's pods, shuffled by the seed, then pods drawn with replacement from
the trace (in name order) appended until their GPU requests would pass 1.3x the cluster's GPU capacity. Pods are
placed one at a time and never leave; a pod that fits no node is dropped. Nodes tie by a seeded order (the
simulator prefixes node names with a random permutation and breaks ties by name). The typical pods come from the
trace as given. After every pod: the arrived GPU requests and the allocated GPUs, as % of capacity; the curve
point at x% arrived is the mean allocation over the pods at which arrival rounds to x (within x±1 when none do).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hamr.pool.scheduler.fragmentation import typical_pods
from hamr.pool.scheduler.gpushare_policies import POLICIES, policy
from hamr.pool.scheduler.node_resources import NodeResources, PodRequest, pod_request

ARRIVED_POINTS = (90, 95, 100, 110, 120)
TUNE_RATIO = 1.3


@dataclass
class FragmentationResult:
    policy: str
    seed: int
    unallocated_gpu_pct: dict[str, float]
    failed_pods: int
    curve: dict[str, float] = field(default_factory=dict)  # unallocated % at each whole % arrived from 70


def _rows(path: Path, columns: tuple[str, ...]):
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: no column {', '.join(missing)} (has {', '.join(reader.fieldnames or [])})")
            yield from enumerate(reader, start=2)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def _int(path, line, row, column) -> int:
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise ValueError(f"{path}:{line}: {column} '{row[column]}' is not an integer") from None


def read_nodes(path: Path) -> NodeResources:
    nodes = NodeResources()
    for line, row in _rows(path, ("sn", "cpu_milli", "memory_mib", "gpu", "model")):
        try:
            nodes.add(
                row["sn"],
                _int(path, line, row, "cpu_milli"),
                _int(path, line, row, "memory_mib"),
                _int(path, line, row, "gpu"),
                row["model"] or "",
            )
        except ValueError as exc:
            raise ValueError(f"{path}:{line}: {exc}") from None
    if not nodes.gpu_capacity_milli:
        raise ValueError(f"{path}: no GPU nodes")
    return nodes


def read_pods(path: Path) -> list[PodRequest]:
    pods = []
    for line, row in _rows(path, ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")):
        values = [_int(path, line, row, c) for c in ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli")]
        try:
            pods.append(pod_request(row["name"], *values, row.get("gpu_spec") or ""))  # gpu_spec may be absent
        except ValueError as exc:
            raise ValueError(f"{path}:{line}: {exc}") from None
    if not pods:
        raise ValueError(f"{path}: no pods")
    return sorted(pods, key=lambda p: p.name)


def workload(pods: list[PodRequest], capacity_milli: int, rng: np.random.Generator) -> list[PodRequest]:
    """The trace shuffled, then draws from it appended up to TUNE_RATIO x capacity (FGD's 'workload tuning')."""
    shuffled = [pods[i] for i in rng.permutation(len(pods))]
    total = sum(p.gpu_total_milli for p in pods)
    while True:
        pod = pods[int(rng.integers(len(pods)))]
        if total + pod.gpu_milli > TUNE_RATIO * capacity_milli:
            return shuffled
        total += pod.gpu_total_milli
        shuffled.append(pod)


def simulate(nodes: NodeResources, pods: list[PodRequest], chooser) -> tuple[np.ndarray, np.ndarray, int]:
    """Place pods in order; per pod, the arrived GPU requests and the allocated GPU share (thousandths)."""
    arrived, allocated = np.zeros(len(pods), dtype=np.int64), np.zeros(len(pods), dtype=np.int64)
    total, in_use, failed = 0, nodes.gpu_allocated_milli, 0
    for i, pod in enumerate(pods):
        total += pod.gpu_total_milli
        placement = chooser.place(nodes, pod)
        if placement is None:
            failed += 1
        else:
            nodes.place(placement.row, pod, placement.gpus)
            in_use += pod.gpu_total_milli
        arrived[i], allocated[i] = total, in_use
    return arrived, allocated, failed


def unallocated_at(arrived, allocated, capacity_milli: int, points=ARRIVED_POINTS) -> dict[str, float]:
    arrived_pct = np.round(arrived * 100 / capacity_milli)
    allocated_pct = np.round(allocated * 100 / capacity_milli, 2)
    out = {}
    for x in points:
        at = arrived_pct == x
        if not at.any():
            at = np.abs(arrived_pct - x) <= 1
        if at.any():
            out[str(x)] = round(100 - float(allocated_pct[at].mean()), 3)
    return out


def run(nodes_file: Path, pods_file: Path, policies: list[str], seeds: list[int]) -> list[FragmentationResult]:
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {', '.join(unknown)} (policies: {', '.join(POLICIES)})")
    cluster, trace = read_nodes(nodes_file), read_pods(pods_file)
    typical = typical_pods(trace)
    capacity = cluster.gpu_capacity_milli
    results = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        pods = workload(trace, capacity, rng)
        by_name = sorted(range(len(cluster)), key=cluster.names.__getitem__)
        tie_rank = np.empty(len(cluster), dtype=np.int64)
        tie_rank[by_name] = rng.permutation(len(cluster))
        for name in policies:
            nodes = cluster.copy()
            nodes.tie_rank = tie_rank
            arrived, allocated, failed = simulate(nodes, pods, policy(name, typical, seed))
            curve = unallocated_at(arrived, allocated, capacity, range(70, 131))
            results.append(FragmentationResult(name, seed, unallocated_at(arrived, allocated, capacity), failed, curve))
    return results


def as_json(results: list[FragmentationResult]) -> dict:
    return {
        "results": [
            {
                "policy": r.policy,
                "seed": r.seed,
                "unallocated_gpu_pct": r.unallocated_gpu_pct,
                "failed_pods": r.failed_pods,
            }
            for r in results
        ]
    }


__all__ = ["ARRIVED_POINTS", "FragmentationResult", "as_json", "read_nodes", "read_pods", "run"]
