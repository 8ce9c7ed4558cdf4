"""Fair share between tenants (Slurm's fair-share factor, Kueue's fair sharing): the tenant that used
least of its share lately goes first.

A tenant's usage is the device-seconds of its jobs' attempts, decayed with a half-life of
HALF_LIFE_S, plus the device-seconds its running attempts have taken so far; divided by its
`weight`. `fair_order` takes a waiting queue and returns it in the order to place: the tenant
with the lowest usage takes its next job (its own by priority, then arrival), is charged a
nominal `charge_s` per device of that job, and the next lowest goes; so equal tenants alternate,
and one tenant's flood of jobs, whatever their priority, waits behind the others' jobs.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from hamr.pool.scheduler.request import JobRequest

HALF_LIFE_S = 3600.0
CHARGE_S = 1.0  # what placing one job costs its tenant within one round, per device (before it has run)


def decayed(value: float, elapsed_s: float, half_life_s: float = HALF_LIFE_S) -> float:
    return value * 0.5 ** (max(elapsed_s, 0.0) / half_life_s)


def fair_order(
    queue: list[JobRequest],
    usage: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    charge_s: float = CHARGE_S,
) -> list[JobRequest]:
    """The queue (in arrival order) in fair-share order: by tenant usage per weight, then priority and arrival within a tenant."""
    usage, weights = usage or {}, weights or {}
    mine: dict[str, list[tuple[int, int, JobRequest]]] = {}
    for arrival, job in enumerate(queue):
        mine.setdefault(job.tenant, []).append((-job.priority, arrival, job))
    for jobs in mine.values():
        jobs.sort(key=lambda item: item[:2])
    heap = [(usage.get(t, 0.0) / max(weights.get(t, 1.0), 1e-9), jobs[0][1], t) for t, jobs in mine.items()]
    heapq.heapify(heap)
    ordered, taken = [], {t: 0 for t in mine}
    while heap:
        share, _, tenant = heapq.heappop(heap)
        jobs = mine[tenant]
        _, _, job = jobs[taken[tenant]]
        ordered.append(job)
        taken[tenant] += 1
        if taken[tenant] < len(jobs):
            share += charge_s * job.n_devices / max(weights.get(tenant, 1.0), 1e-9)
            heapq.heappush(heap, (share, jobs[taken[tenant]][1], tenant))
    return ordered


__all__ = ["CHARGE_S", "HALF_LIFE_S", "decayed", "fair_order"]
