"""What the dashboard shows beyond the API's lists: each device's utilisation and memory over time and each
deployment's request rate (`History`, a bounded ring buffer the service fills every SAMPLE_EVERY_S seconds),
the free share stranded on each node (`stranded_share`) and FGD's expected fragment of each node
(`node_fragments`), and the newest jobs with their placements and reasons.

Everything here reads; nothing changes the registry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from hamr.pool.registry import ANY_TENANT, Device, Event, Job, Placement, Registry
from hamr.pool.registry.fleet import USABLE_HEALTH
from hamr.pool.registry.scope import Scope, scoped
from hamr.pool.scheduler.fragmentation import node_fragmentation
from hamr.pool.scheduler.live_nodes import LiveDevice, node_view, typical_shares

SAMPLE_EVERY_S = 2.0
KEPT_SAMPLES = 300  # 10 minutes at SAMPLE_EVERY_S
WHOLE = 1000  # thousandths of a device
JOBS_SHOWN = 50  # the newest jobs of the caller's scope
REASON_EVENTS = ("job.waiting", "job.requeued")

log = logging.getLogger("hamr.pool.service")


def stranded_share(allocated: Iterable[int]) -> float:
    """The free share, in devices, left on a node's partly allocated devices (`allocated`: thousandths of
    each device allocated); free and full devices strand nothing. A first measure of fragmentation, kept to
    this one function so that a better one can replace it."""
    return sum(WHOLE - a for a in allocated if 0 < a < WHOLE) / WHOLE


def node_fragments(registry: Registry) -> tuple[dict[str, float], dict[str, float]]:
    """Per node name, from one read of the registry: the stranded share of its devices, and FGD's expected
    fragment of its usable ones, in devices: the free share that the shares the pool is asked for (deployments'
    shares by replicas, a whole device per running job) could not use, averaged over those requests
    (scheduler/fragmentation.py, over live_nodes.node_view). A device is allocated whole while a job's current
    attempt holds it, else by the shares its live replicas reserve (as the dispatcher and the reconciler count)."""
    busy = registry.busy_devices()
    allocated = {uuid: min(WHOLE, share) for uuid, share in registry.replica_shares().items()}
    allocated |= dict.fromkeys(busy, WHOLE)
    names = {n.id: n.name for n in registry.list_nodes()}
    by_node: dict[str, list[int]] = {name: [] for name in names.values()}
    usable: list[LiveDevice] = []
    for d in registry.list_devices():
        node = names.get(d.node_id, "")
        by_node.setdefault(node, []).append(allocated.get(d.uuid, 0))
        if not d.drained and d.health in USABLE_HEALTH:
            usable.append(LiveDevice(d.uuid, node, d.architecture, allocated.get(d.uuid, 0)))
    shares = Counter({WHOLE: len(busy)})
    for deployment in registry.list_deployments(ANY_TENANT):
        shares[min(deployment.share, WHOLE)] += deployment.replicas
    view, where = node_view(usable)
    node_of = {d.key: d.node for d in usable}
    row_node = {row: node_of[key] for (row, _), key in where.items()}
    expected = dict.fromkeys(by_node, 0.0)
    for row, fragment in enumerate(node_fragmentation(view, typical_shares(+shares))):
        expected[row_node[row]] += float(fragment) / WHOLE
    return {name: stranded_share(s) for name, s in by_node.items()}, expected


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the epoch
    devices: dict[str, tuple[float | None, int | None, int]]  # uuid -> (utilisation 0..1, memory used, total)
    served: dict[int, tuple[int, int]]  # replica id -> (deployment id, requests it has answered)


@dataclass
class History:
    """The last KEPT_SAMPLES samples of the pool's devices and replicas, oldest first."""

    every_s: float = SAMPLE_EVERY_S
    clock: Callable[[], float] = time.time  # seconds since the epoch
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=KEPT_SAMPLES))

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # the samples
        self._sampling = threading.Lock()  # one sample at a time: two close together would make a rate of noise

    def refresh(self, registry: Registry, hosts: Iterable) -> None:
        """A sample, unless the last is younger than `every_s`."""
        with self._sampling:
            if self.stale():
                self.sample(registry, hosts)

    def sample(self, registry: Registry, hosts: Iterable) -> None:
        """One sample: the registry's devices (as their last heartbeat reported them) and the requests each
        replica of this process's `hosts` (ReplicaHosts) has answered."""
        devices = {}
        for d in registry.list_devices():
            used = d.memory_total - d.memory_free if d.memory_free is not None else None
            utilisation = d.details.get("utilisation") if isinstance(d.details, dict) else None
            devices[d.uuid] = (utilisation if isinstance(utilisation, int | float) else None, used, d.memory_total)
        served = {}
        for host in list(hosts):
            for replica_id, hosted in dict(host.hosted).items():
                served[replica_id] = (hosted.view.deployment_id, hosted.served)
        with self._lock:
            self.samples.append(Sample(self.clock(), devices, served))

    def stale(self) -> bool:
        with self._lock:
            last = self.samples[-1].t if self.samples else None
        return last is None or self.clock() - last >= self.every_s

    def device_series(self, uuids: Iterable[str]) -> dict[str, tuple[list[float], list, list, int]]:
        """uuid -> (times, utilisation, memory used, memory total) over the samples that saw it."""
        with self._lock:
            samples = list(self.samples)
        series: dict[str, tuple[list[float], list, list, int]] = {}
        for uuid in uuids:
            seen = [(s.t, s.devices[uuid]) for s in samples if uuid in s.devices]
            if seen:
                total = seen[-1][1][2]
                series[uuid] = ([t for t, _ in seen], [v[0] for _, v in seen], [v[1] for _, v in seen], total)
        return series

    def request_rates(self, deployment_ids: Iterable[int]) -> dict[int, tuple[list[float], list[float]]]:
        """deployment id -> (times, requests per second since the sample before), from the second sample on.
        A replica counts between two samples that both saw it (one that stopped or moved in between does not)."""
        wanted = set(deployment_ids)
        with self._lock:
            samples = list(self.samples)
        rates: dict[int, tuple[list[float], list[float]]] = {d: ([], []) for d in wanted}
        for before, after in zip(samples, samples[1:]):
            spent = after.t - before.t
            if spent <= 0:
                continue
            answered = dict.fromkeys(wanted, 0)
            for replica_id, (deployment_id, count) in after.served.items():
                earlier = before.served.get(replica_id)
                if deployment_id in wanted and earlier is not None:
                    answered[deployment_id] += max(0, count - earlier[1])
            for deployment_id, count in answered.items():
                rates[deployment_id][0].append(after.t)
                rates[deployment_id][1].append(count / spent)
        return rates

    async def keep_sampling(self, registry: Registry, hosts) -> None:
        """Sample every `every_s` seconds until cancelled (the app's lifespan); a failed sample is logged."""
        while True:
            try:
                await run_in_threadpool(self.refresh, registry, hosts)
            except Exception:  # noqa: BLE001 - the next sample may work; the dashboard shows a gap
                log.exception("dashboard: sampling the pool failed")
            await asyncio.sleep(self.every_s)


@dataclass(frozen=True)
class JobDetails:
    job: Job
    placements: list[tuple[int, str, str, datetime]]  # (attempt, device uuid, the scheduler's reason, when)
    reason: str | None  # the latest reason it waited or was requeued


def newest_jobs(registry: Registry, scope: Scope, limit: int = JOBS_SHOWN) -> list[JobDetails]:
    """The newest `limit` jobs of `scope`, newest first, each with its placements and latest reason (three queries)."""
    with registry.reading() as session:
        jobs = list(session.scalars(scoped(select(Job), Job.tenant_id, scope).order_by(Job.id.desc()).limit(limit)))
        ids = [j.id for j in jobs]
        placed = session.execute(
            select(Placement.job_id, Placement.attempt, Device.uuid, Placement.reason, Placement.created_at)
            .join(Device, Device.id == Placement.device_id)
            .where(Placement.job_id.in_(ids))
            .order_by(Placement.id)
        ).all()
        events = session.execute(
            scoped(select(Event.subject, Event.payload), Event.tenant_id, scope)
            .where(Event.kind.in_(REASON_EVENTS), Event.subject.in_([f"job:{i}" for i in ids]))
            .order_by(Event.id)
        ).all()
    placements: dict[int, list[tuple[int, str, str, datetime]]] = {i: [] for i in ids}
    for job_id, *placement in placed:
        placements[job_id].append(tuple(placement))
    reasons = {subject: payload.get("reason") for subject, payload in events if isinstance(payload, dict)}
    return [JobDetails(j, placements[j.id], reasons.get(f"job:{j.id}")) for j in jobs]


__all__ = ["History", "JobDetails", "newest_jobs", "node_fragments", "stranded_share"]
