"""Gavel's round-based mechanism: an allocation over device types becomes placements, round by round, preemptively.

Each round (360 s) the jobs are placed greedily, type by type, in order of priority = X[i, j] / the fraction of
type j's time job i has received since the allocation was last computed (jobs that have received none first).
A placed job runs for the round, or until it finishes; the next round starts when the last job of this one
stops. The allocation is recomputed at a round's start when jobs arrived or finished, at most every 1,920 s.

Simplified from Gavel's simulator: no deficit tie-breaker (ties go to the larger allocation, then the lower job
id), no placement within a type (throughput does not depend on it there either), no co-location. Jobs that arrived
since the last allocation have none until the next; like every job of priority 0 they take devices left over.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from hamr.pool.scheduler.allocation import (
    finish_time_fairness,
    isolated_throughputs,
    max_completion_rate,
    max_min_fairness,
    min_makespan,
    problem,
)
from hamr.pool.scheduler.gavel_workload import GavelJob

ROUND_S = 360.0
REALLOCATE_EVERY_S = 1920.0
TYPE_ORDER = ("v100", "p100", "k80")
FAIR_SRPT_SHARE = 0.9  # fair_srpt_perf: every job keeps this much of its las_perf share  # Gavel's order of types in the greedy pass; agnostic policies shuffle it


@dataclass
class _Active:
    job: GavelJob
    rates: np.ndarray  # steps/s of the whole job on each type
    remaining: float
    received: np.ndarray  # seconds on each type since the last allocation


@dataclass
class RoundsResult:
    policy: str
    jcts: dict[int, float] = field(default_factory=dict)  # job id -> seconds from arrival to completion
    makespan: float = 0.0
    rounds: int = 0
    allocations: int = 0

    def average_jct(self, first: int, last: int) -> float:
        window = [self.jcts[i] for i in range(first, last) if i in self.jcts]
        return float(np.mean(window)) if window else float("nan")


class FinishTimeFair:
    """Themis's finish-time fairness over one simulation: it keeps, per job, the time its steps so far would have
    taken on its isolated share. Agnostic (ftf): every type is taken to run the job at its V100 rate."""

    def __init__(self, perf: bool):
        self.perf = perf
        self.isolated: dict[int, tuple[float, float, float]] = {}  # job -> (isolated time, remaining, iso rate)

    def __call__(self, p, active: list[_Active], now: float) -> np.ndarray:
        if not self.perf:
            reference = p.throughputs[:, :1] if p.shape[1] else p.throughputs
            p = problem(np.where(p.throughputs > 0, reference, 0.0), p.scale, p.counts)
        iso = isolated_throughputs(p)
        spent = []
        for a, rate in zip(active, iso, strict=True):
            before = self.isolated.get(a.job.id)
            if before is None:
                spent.append(0.0)
            else:
                time, remaining, old_rate = before
                spent.append(time + (remaining - a.remaining) / old_rate if old_rate > 0 else time)
            self.isolated[a.job.id] = (spent[-1], a.remaining, float(rate))
        elapsed = [now - a.job.arrival for a in active]
        return finish_time_fairness(p, [a.remaining for a in active], elapsed, spent)[0]


def _stateless(solve: Callable) -> Callable[[], Callable]:
    return lambda: lambda p, active, now: solve(p, active)


POLICIES: dict[str, Callable[[], Callable]] = {
    "las": _stateless(lambda p, active: max_min_fairness(p, perf=False)),
    "las_perf": _stateless(lambda p, active: max_min_fairness(p, perf=True)),
    "makespan": _stateless(lambda p, active: min_makespan(p, [a.remaining for a in active])[0]),
    "ftf": lambda: FinishTimeFair(perf=False),
    "ftf_perf": lambda: FinishTimeFair(perf=True),
    "srpt_perf": _stateless(lambda p, active: max_completion_rate(p, [a.remaining for a in active])),
    "fair_srpt_perf": _stateless(
        lambda p, active: max_completion_rate(p, [a.remaining for a in active], fairness=FAIR_SRPT_SHARE)
    ),
}
AWARE = {
    "las_perf",
    "makespan",
    "ftf_perf",
    "srpt_perf",
    "fair_srpt_perf",
}  # policies that see per-type throughputs keep Gavel's type order


def rates_of(job: GavelJob, throughputs: dict, types: list[str]) -> np.ndarray:
    return np.array([throughputs.get(t, {}).get((job.kind, job.scale), 0.0) for t in types])


def simulate(
    jobs: Iterable[GavelJob],
    throughputs: dict[str, dict[tuple[str, int], float]],
    counts: dict[str, int],
    policy: str,
    until_done: set[int] | None = None,
    seed: int = 0,
) -> RoundsResult:
    """Run `jobs` (in order of arrival; a stream may be endless) on `counts` devices per type under `policy`, until
    every job in `until_done` is done (without it: every job of a finite `jobs`)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy '{policy}' (known: {', '.join(POLICIES)})")
    allocate = POLICIES[policy]()
    types = [t for t in TYPE_ORDER if t in counts] + sorted(set(counts) - set(TYPE_ORDER))
    capacity = np.array([counts[t] for t in types], dtype=float)
    shuffle = random.Random(seed)
    result = RoundsResult(policy)
    if until_done is None:
        jobs = list(jobs)
        until_done = {j.id for j in jobs}
    arrivals = iter(jobs)
    upcoming = next(arrivals, None)
    wanted = set(until_done)
    active: list[_Active] = []
    allocation = np.zeros((0, len(types)))
    now, last_reset, changed = 0.0, None, False
    while wanted - result.jcts.keys():
        while upcoming is not None and upcoming.arrival <= now:
            job, upcoming = upcoming, next(arrivals, None)
            rates = rates_of(job, throughputs, types)
            if not ((rates > 0) & (capacity >= job.scale)).any():
                raise ValueError(f"job {job.id} ({job.kind} on {job.scale} GPUs) runs on no device type of the cluster")
            active.append(_Active(job, rates, job.steps, np.zeros(len(types))))
            changed = True
        if not active:
            if upcoming is None:
                raise ValueError(f"the jobs ended before {len(wanted - result.jcts.keys())} awaited ones arrived")
            now = upcoming.arrival
            continue
        if changed and (last_reset is None or now - last_reset >= REALLOCATE_EVERY_S):
            p = problem([a.rates for a in active], [a.job.scale for a in active], capacity)
            allocation = allocate(p, active, now)
            for a in active:
                a.received[:] = ROUND_S / 2  # as Gavel resets them: nobody starts at a share of 0
            last_reset, changed = now, False
            result.allocations += 1
        elif allocation.shape[0] != len(active):  # arrivals or departures since, not yet reallocated
            allocation = _carried(allocation, active)
        placed = _place(active, allocation, capacity, types, policy in AWARE, shuffle)
        end = now
        for i, t in placed:
            a = active[i]
            rate = a.rates[t]
            run = min(ROUND_S, a.remaining / rate)
            a.remaining -= rate * run
            a.received[t] += run
            end = max(end, now + run)
            if a.remaining <= 1e-9 * a.job.steps:
                result.jcts[a.job.id] = now + run - a.job.arrival
        finished = {i for i, _ in placed if active[i].job.id in result.jcts}
        if finished:
            keep = [i for i in range(len(active)) if i not in finished]
            active = [active[i] for i in keep]
            allocation = allocation[keep]
            changed = True
        result.rounds += 1
        now = end if placed else (upcoming.arrival if upcoming is not None else now + ROUND_S)
    result.makespan = now
    return result


def _carried(allocation: np.ndarray, active: list[_Active]) -> np.ndarray:
    """Rows for jobs that arrived since the allocation was computed: none of the time (until the next one)."""
    extra = len(active) - allocation.shape[0]
    if extra <= 0:
        return allocation[: len(active)]
    return np.vstack([allocation, np.zeros((extra, allocation.shape[1]))])


def _place(
    active: list[_Active], allocation: np.ndarray, capacity: np.ndarray, types: list[str], aware: bool, rng
) -> list[tuple[int, int]]:
    """(job index, type index) of the jobs that run this round: per type, by priority, while devices last."""
    order = list(range(len(types)))
    if not aware:
        rng.shuffle(order)
    left = capacity.copy()
    placed, taken = [], set()
    total = np.array([sum(a.received[t] for a in active) for t in range(len(types))])
    for t in order:
        ranked = []
        for i, a in enumerate(active):
            x = allocation[i, t] if i < allocation.shape[0] else 0.0
            if a.rates[t] <= 0:
                continue
            share = a.received[t] / total[t] if total[t] > 0 else 0.0
            priority = 0.0 if x <= 0 else (x * 1e9 if share == 0 else x / share)
            ranked.append((-priority, -x, a.job.id, i))
        for _, _, _, i in sorted(ranked):
            scale = active[i].job.scale
            if i in taken or scale > left[t]:
                continue
            placed.append((i, t))
            taken.add(i)
            left[t] -= scale
    return placed
