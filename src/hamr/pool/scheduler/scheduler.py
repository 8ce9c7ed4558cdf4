"""Placement decisions over a DeviceTable: filter, then rank by policy; every decision says why.

Filters (all vectorised): present, healthy, not drained, has one of the job's targets,
enough free memory, enough free share. Policies rank what is left:

- ``binpack``: the most allocated devices first, on the most allocated nodes (fewer devices
  left partly used, the rest kept whole: less fragmentation);
- ``spread``: the least allocated devices first, on the least allocated nodes;
- ``max_throughput``: the architecture with the highest learned throughput for this
  executable first (unmeasured architectures after measured ones), binpack within it.

A gang job (n_devices > 1) is placed all or nothing; binpack and max_throughput keep a gang
on one node (binpack) or one architecture (max_throughput) when they can.
"""

from __future__ import annotations

import numpy as np

from hamr.pool.scheduler.request import Decision, JobRequest, TenantLimits
from hamr.pool.scheduler.table import DeviceTable
from hamr.pool.scheduler.throughput import ThroughputModel

POLICIES = ("binpack", "spread", "max_throughput")


class Scheduler:
    def __init__(self, table: DeviceTable, policy: str = "binpack", throughput: ThroughputModel | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy '{policy}' (policies: {', '.join(POLICIES)})")
        self.table = table
        self.policy = policy
        self.throughput = throughput or ThroughputModel()
        self._last_score = 0.0  # the comparative advantage of the last decision (max_throughput)

    # -- one job --

    def place(
        self, job: JobRequest, limits: TenantLimits | None = None, policy: str | None = None, commit: bool = True
    ) -> Decision:
        policy = policy or self.policy
        quota = _quota_refusal(job, limits)
        if quota:
            return Decision(job.id, (), (), policy, quota)
        t = self.table
        v = t.view()
        wanted = t.bits(job.targets)
        alive = t.present[v] & t.healthy[v] & ~t.drained[v]
        compatible = alive & ((t.targets[v] & wanted) != 0)
        roomy = compatible & (t.memory_free[v] >= job.memory)
        feasible = roomy & (t.allocated[v] + job.share <= 1000)
        rows = np.flatnonzero(feasible)
        if len(rows) < job.n_devices:
            return Decision(job.id, (), (), policy, _why_not(job, t, alive, compatible, roomy, rows))
        chosen, how, self._last_score = self._rank(policy, job, rows)
        devices = tuple(t.ids[r] for r in chosen)
        targets = tuple(self._target_for(job, r) for r in chosen)
        if commit:
            for device in devices:
                t.allocate(device, job.share, job.memory)
            if limits is not None:
                limits.in_use_devices += len(devices)
                limits.running_jobs += 1
        where = ", ".join(
            f"{d} ({tg}, {t.architectures[r]}, node {t.nodes[r]})" for d, tg, r in zip(devices, targets, chosen)
        )
        return Decision(
            job.id, devices, targets, policy, f"{policy}: {len(rows)} of {len(t)} devices fit; {how}; chose {where}"
        )

    def release(self, decision: Decision, job: JobRequest, limits: TenantLimits | None = None) -> None:
        for device in decision.devices:
            self.table.release(device, job.share, job.memory)
        if limits is not None and decision.devices:
            limits.in_use_devices -= len(decision.devices)
            limits.running_jobs -= 1

    # -- a queue --

    def schedule(self, queue: list[JobRequest], limits: dict[str, TenantLimits] | None = None) -> list[Decision]:
        """One decision per job: higher priority first, then queue order; each placement takes its devices
        before the next (a job that does not fit waits; smaller ones behind it may still start)."""
        limits = limits or {}
        order = sorted(range(len(queue)), key=lambda i: (-queue[i].priority, i))
        return [self.place(queue[i], limits.get(queue[i].tenant)) for i in order]

    def start_waiting(
        self,
        queue: list[JobRequest],
        limits: dict[str, TenantLimits] | None = None,
        passed_over: dict[str, int] | None = None,
        window: int = 16,
        patience: int = 8,
        ranked: bool = False,
    ) -> list[Decision]:
        """Place what can start now from a waiting queue (in arrival order); returns the placed decisions.

        binpack and spread take jobs by priority, then arrival. max_throughput looks at the first
        `window` waiting jobs of the highest priority and starts the one that gains most from the
        free devices (comparative advantage), again and again; a job passed over `patience` times
        starts first, so none starves. `passed_over` carries those counts between calls.
        `ranked`: the queue is already in the order to take (fairshare.fair_order), which replaces
        priority and arrival; max_throughput then looks at its first `window` jobs.
        A tenant at its `limits` (TenantLimits by tenant) is passed over; the others still start."""
        limits = limits or {}
        passed_over = passed_over if passed_over is not None else {}
        if ranked:
            waiting = list(queue)
        else:
            waiting = [queue[i] for i in sorted(range(len(queue)), key=lambda i: (-queue[i].priority, i))]
        placed: list[Decision] = []
        while waiting:
            if self.policy != "max_throughput":
                for job in waiting:
                    decision = self.place(job, limits.get(job.tenant))
                    if decision.placed:
                        placed.append(decision)
                return placed
            top = waiting[0].priority
            candidates = waiting[:window] if ranked else [j for j in waiting if j.priority == top][:window]
            best = None
            for job in candidates:
                decision = self.place(job, limits.get(job.tenant), commit=False)
                if not decision.placed:
                    continue
                key = (passed_over.get(job.id, 0) >= patience, self._last_score)
                if best is None or key > best[0]:
                    best = (key, job)
            if best is None:
                lower = waiting[len(candidates) :] if ranked else [j for j in waiting if j.priority != top]
                if not lower or len(lower) == len(waiting):
                    return placed
                waiting = lower
                continue
            job = best[1]
            placed.append(self.place(job, limits.get(job.tenant)))
            waiting.remove(job)
            for other in candidates:
                if other is not job:
                    passed_over[other.id] = passed_over.get(other.id, 0) + 1
        return placed

    # -- ranking --

    def _rank(self, policy: str, job: JobRequest, rows: np.ndarray) -> tuple[np.ndarray, str, float]:
        t = self.table
        n = len(t.ids)
        allocated = t.allocated[rows]
        node_load = np.bincount(t.node[:n], weights=t.allocated[:n], minlength=len(t.node_index))[t.node[rows]]
        rates = self.throughput.rates(job.executable) if policy == "max_throughput" else {}
        score = None
        if policy == "spread":
            ranked, how = (
                rows[np.lexsort((rows, allocated, node_load))],
                "least allocated devices on the least loaded nodes",
            )
        elif rates:
            score = self._advantage(rates)
            ranked = rows[np.lexsort((rows, -node_load, -allocated, -score[t.arch[rows]]))]
            how = (
                "highest measured throughput, weighed by comparative advantage at this load ("
                + ", ".join(f"{a} {r:.3g}/s" for a, r in sorted(rates.items(), key=lambda kv: -kv[1]))
                + ")"
            )
        else:
            ranked = rows[np.lexsort((rows, -node_load, -allocated))]
            how = (
                "no throughput measured yet, so binpack: " if policy == "max_throughput" else ""
            ) + "most allocated devices on the most loaded nodes"
        if job.n_devices == 1:
            chosen = ranked[:1]
        else:
            # a gang runs in lockstep at its slowest member's pace: one architecture, the best ranked with enough
            ranked = _first_group(ranked, t.arch, job.n_devices)
            if policy == "spread":
                chosen, how = _distinct_nodes_first(ranked, t.node, job.n_devices), how + ", gang on one architecture"
            else:
                chosen = _first_group(ranked, t.node, job.n_devices)[: job.n_devices]
                how += ", gang on one architecture and as few nodes as possible"
        worth = float(score[t.arch[chosen]].min()) if score is not None else 0.0
        return chosen, how, worth

    def _advantage(self, rates: dict[str, float]) -> np.ndarray:
        """Score per architecture: the job's rate there relative to its best, divided by how good that
        architecture is for a typical job, raised to the pool's load. Idle pool: the fastest device for
        this job. Busy pool: the device where this job loses least against the others (a job barely
        faster on the newest GPU leaves it to jobs that gain more: Gavel's heterogeneity argument)."""
        t = self.table
        v = t.view()
        alive = t.present[v]
        load = float(t.allocated[v][alive].sum()) / (1000.0 * max(int(alive.sum()), 1))
        best = max(rates.values())
        typical = self.throughput.typical_share()
        score = np.full(len(t.arch_index), -1.0)
        for arch, rate in rates.items():
            if arch in t.arch_index and best > 0:
                score[t.arch_index[arch]] = (rate / best) / max(typical.get(arch, 1.0), 1e-9) ** load
        return score

    def _target_for(self, job: JobRequest, row: int) -> str:
        bits = int(self.table.targets[row])
        for target in job.targets:
            if bits & self.table.target_bits[target]:
                return target
        raise AssertionError("a feasible device runs none of the job's targets")


def _quota_refusal(job: JobRequest, limits: TenantLimits | None) -> str:
    if limits is None:
        return ""
    if limits.max_running_jobs is not None and limits.running_jobs >= limits.max_running_jobs:
        return f"quota: tenant {job.tenant} runs {limits.running_jobs} of {limits.max_running_jobs} jobs"
    if limits.max_devices is not None and limits.in_use_devices + job.n_devices > limits.max_devices:
        return (
            f"quota: tenant {job.tenant} uses {limits.in_use_devices} of {limits.max_devices} devices; "
            f"this job needs {job.n_devices}"
        )
    return ""


def _why_not(job, t, alive, compatible, roomy, rows) -> str:
    total = len(t)
    return (
        f"waiting: needs {job.n_devices} device(s), {len(rows)} fit. Of {total}: "
        f"{int(alive.sum())} healthy and not drained, {int(compatible.sum())} of those run "
        f"{'/'.join(job.targets)}, {int(roomy.sum())} of those have {job.memory:,} B free, "
        f"{len(rows)} of those have {job.share}/1000 of the device free"
    )


def _first_group(ranked: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """The ranked devices of the first group (in rank order of its best device) with at least n members;
    all of `ranked` when no group has enough."""
    groups = group[ranked]
    counts = np.bincount(groups)
    _, first = np.unique(groups, return_index=True)
    for g in groups[np.sort(first)]:
        if counts[g] >= n:
            return ranked[groups == g]
    return ranked


def _distinct_nodes_first(ranked: np.ndarray, node: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return ranked[:1]
    _, first = np.unique(node[ranked], return_index=True)
    firsts = ranked[np.sort(first)]
    rest = np.setdiff1d(ranked, firsts, assume_unique=True)
    rest = ranked[np.isin(ranked, rest)]
    return np.concatenate([firsts, rest])[:n]
