"""Placement decisions over a DeviceTable: filter, then rank by policy; every decision says why.

Filters (all vectorised): present, healthy, not drained, has one of the job's targets,
enough free memory, enough free share. Policies rank what is left:

- ``binpack``: the most allocated devices first, on the most allocated nodes (fewer devices
  left partly used, the rest kept whole: less fragmentation);
- ``spread``: the least allocated devices first, on the least allocated nodes;
- ``max_throughput``: the architecture with the highest learned throughput for this
  executable first (unmeasured architectures after measured ones), binpack within it;
- ``fgd``: the device (and node) where the pool's expected GPU fragmentation grows least for the shares jobs
  ask for (FGD, gpushare_policies.FragmentationGradient, the simulator's own object, over live_nodes.node_view);
- ``las_perf``: Gavel's heterogeneity-aware max-min fairness (rounds.POLICIES["las_perf"], the simulator's own
  policy) over the waiting jobs and the free devices by architecture, with the throughputs measured per
  executable; each job goes to the architecture its allocation favours, binpack (or FGD for a share) within it.

A gang job (n_devices > 1) is placed all or nothing; binpack and max_throughput keep a gang
on one node (binpack) or one architecture (max_throughput) when they can.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from hamr.pool.scheduler.allocation import problem
from hamr.pool.scheduler.gpushare_policies import FragmentationGradient
from hamr.pool.scheduler.live_nodes import LiveDevice, node_view, typical_shares
from hamr.pool.scheduler.node_resources import PodRequest
from hamr.pool.scheduler.request import WHOLE, Decision, JobRequest, TenantLimits
from hamr.pool.scheduler.rounds import POLICIES as ALLOCATION_POLICIES
from hamr.pool.scheduler.table import DeviceTable
from hamr.pool.scheduler.throughput import ThroughputModel

POLICIES = ("binpack", "spread", "max_throughput", "fgd", "las_perf")
ALLOCATION_WINDOW = 64  # waiting jobs las_perf's allocation covers at once


class Scheduler:
    def __init__(self, table: DeviceTable, policy: str = "binpack", throughput: ThroughputModel | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy '{policy}' (policies: {', '.join(POLICIES)})")
        self.table = table
        self.policy = policy
        self.throughput = throughput or ThroughputModel()
        self._last_score = 0.0  # the comparative advantage of the last decision (max_throughput)
        self.shares: Counter = Counter()  # GPU shares of the jobs placed so far: fgd's typical pods

    # -- one job --

    def place(
        self,
        job: JobRequest,
        limits: TenantLimits | None = None,
        policy: str | None = None,
        commit: bool = True,
        architecture: str | None = None,
        why: str = "",
    ) -> Decision:
        """Place one job now (or say why not). `architecture`: only devices of that one; `why` prefixes the reason."""
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
        if architecture is not None:
            feasible &= t.arch[v] == t.arch_index.get(architecture, -1)
        rows = np.flatnonzero(feasible)
        if len(rows) < job.n_devices:
            return Decision(job.id, (), (), policy, _why_not(job, t, alive, compatible, roomy, rows))
        chosen, how, self._last_score = self._rank(policy, job, rows)
        devices = tuple(t.ids[r] for r in chosen)
        targets = tuple(self._target_for(job, r) for r in chosen)
        if commit:
            self.shares[job.share] += len(devices)
            for device in devices:
                t.allocate(device, job.share, job.memory)
            if limits is not None:
                limits.in_use_devices += len(devices)
                limits.running_jobs += 1
        where = ", ".join(
            f"{d} ({tg}, {t.architectures[r]}, node {t.nodes[r]})" for d, tg, r in zip(devices, targets, chosen)
        )
        return Decision(
            job.id,
            devices,
            targets,
            policy,
            f"{policy}: {why}{len(rows)} of {len(t)} devices fit; {how}; chose {where}",
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
        if self.policy == "las_perf":
            return self._start_by_allocation(waiting, limits)
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

    def _start_by_allocation(self, waiting: list[JobRequest], limits: dict[str, TenantLimits]) -> list[Decision]:
        """Gavel's las_perf over the first ALLOCATION_WINDOW waiting jobs and the free devices: each job, in queue
        order, tries the architectures its allocation gives it time on, most first; then any free device is
        given to a job still waiting (no device idles while a job could run on it)."""
        jobs = waiting[:ALLOCATION_WINDOW]
        archs, x, counts = self.allocation(jobs)
        placed, left = [], []
        for i, job in enumerate(jobs):
            share = ", ".join(f"{x[i, j]:.2f} on {archs[j]}" for j in np.argsort(-x[i]) if x[i, j] > 1e-6)
            why = (
                f"allocation (max-min fair over throughput normalised by each job's proportional share; "
                f"{len(jobs)} waiting, free: {', '.join(f'{a} {c}' for a, c in zip(archs, counts))}) gives this job "
                f"{share or 'no time now'}; "
            )
            decision = None
            for j in np.argsort(-x[i]):
                if x[i, j] <= 1e-6:
                    break
                decision = self.place(job, limits.get(job.tenant), architecture=archs[j], why=why)
                if decision.placed:
                    break
            if decision is not None and decision.placed:
                placed.append(decision)
            else:
                left.append(job)
        for job in left:
            decision = self.place(job, limits.get(job.tenant), why="no allocated device free, so any free one; ")
            if decision.placed:
                placed.append(decision)
        return placed

    def allocation(self, jobs: list[JobRequest]) -> tuple[list[str], np.ndarray, list[int]]:
        """The las_perf allocation X[job, architecture] over the free devices of each architecture. A job's
        throughput on an architecture is its measured rate there (x its gang size); unmeasured where others are
        measured: its slowest measured rate; nothing measured: 1 everywhere it runs."""
        t = self.table
        v = t.view()
        alive = t.present[v] & t.healthy[v] & ~t.drained[v]
        archs = sorted({t.architectures[r] for r in np.flatnonzero(alive)})
        free = alive & (t.allocated[v] == 0)
        arch_of = np.array([t.architectures[r] for r in range(len(t.ids))], dtype=object)
        counts = [int((free & (arch_of == a)).sum()) for a in archs]
        rates = np.zeros((len(jobs), len(archs)))
        for i, job in enumerate(jobs):
            wanted = t.bits(job.targets)
            runs = [bool((alive & (arch_of == a) & ((t.targets[v] & wanted) != 0)).any()) for a in archs]
            measured = self.throughput.rates(job.executable)
            floor = min(measured.values()) if measured else 1.0
            for j, a in enumerate(archs):
                if runs[j]:
                    rates[i, j] = measured.get(a, floor) * job.n_devices
        if not jobs or not archs:
            return archs, np.zeros((len(jobs), len(archs))), counts
        p = problem(rates, [job.n_devices for job in jobs], counts)
        return archs, ALLOCATION_POLICIES["las_perf"]()(p, [], 0.0), counts

    # -- ranking --

    def _rank(self, policy: str, job: JobRequest, rows: np.ndarray) -> tuple[np.ndarray, str, float]:
        t = self.table
        n = len(t.ids)
        allocated = t.allocated[rows]
        node_load = np.bincount(t.node[:n], weights=t.allocated[:n], minlength=len(t.node_index))[t.node[rows]]
        rates = self.throughput.rates(job.executable) if policy == "max_throughput" else {}
        score = None
        if job.n_devices == 1 and (policy == "fgd" or (policy == "las_perf" and job.share < WHOLE)):
            return self._least_fragmenting(job, rows)
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

    def _least_fragmenting(self, job: JobRequest, rows: np.ndarray) -> tuple[np.ndarray, str, float]:
        t = self.table
        view, where = node_view([LiveDevice(int(r), t.nodes[r], t.architectures[r], int(t.allocated[r])) for r in rows])
        typical = typical_shares(self.shares + Counter({job.share: 1}))
        placement = FragmentationGradient(typical).place(view, PodRequest(job.id, 0, 0, 1, job.share))
        shares = ", ".join(f"{m}/1000 {f:.0%}" for m, f in zip(typical.gpu_milli, typical.frequency))
        how = (
            f"the least growth in expected GPU fragmentation for the typical shares ({shares}): "
            f"FGD score {placement.score:g} of 100"
        )
        return np.array([where[(placement.row, placement.gpus[0])]]), how, placement.score

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
