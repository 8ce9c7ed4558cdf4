"""Admission for the data plane: deployment requests wait their turn, in bounded queues, on threads of their own.

Each request takes a slot of its tenant (the deployment's owner: `max_inflight_requests` running,
`max_queued_requests` waiting, the tenant's columns, cached for LIMITS_CACHE_S) and then one of
its deployment (`per_replica` running per ready replica, since more would only contend for the
same device, and `deployment_queue` waiting: the pool's settings). A request that
finds both the running slots and the queue full is refused at once with `Busy` (the service's
429, with Retry-After); one that waits is let in first come, first served. A running request runs
on `executor`, the data plane's own DATA_PLANE_THREADS threads, never on the threads that the
API's other routes and the agents' heartbeats run on (anyio's default limiter), so a flood of
requests cannot make the control plane wait for a thread; and the data plane's threads run at a
lower CPU priority (nice DATA_PLANE_NICE, Linux), so the control plane waits less for a core too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import threading
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from hamr.errors import HamrError

DATA_PLANE_THREADS = 32
DATA_PLANE_NICE = 10
PER_REPLICA, DEPLOYMENT_QUEUE = 2, 64
LIMITS_CACHE_S = 2.0


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DATA_PLANE_NICE)  # this thread only, on Linux
    except (AttributeError, OSError):  # elsewhere the threads keep the process's priority
        pass


def compute_on_request_threads() -> None:
    """For a process that serves deployment requests: numpy's BLAS computes on the calling thread.

    BLAS's own worker threads run at the process's priority, above the data plane's lowered
    threads, so one tenant's large MatMuls would outrank every other request; and requests already
    run side by side. Measured with bench/fairness.py (docs/performance.md)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


async def run_in(executor: concurrent.futures.Executor, fn, *args):
    """`fn(*args)` on the executor. A caller cancelled meanwhile (its client went away) still waits
    for the thread to finish before it lets go of its admission slot."""
    future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


class Busy(HamrError):
    def __init__(self, line: str, retry_after_s: float):
        super().__init__(line)
        self.retry_after = max(1, math.ceil(retry_after_s))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@dataclass
class Gate:
    """`limit` slots (None: any number), then a FIFO queue of `queue` waiters (None: any number).

    Thread-safe, and a waiter may wait on another event loop than the one that frees its slot
    (uvicorn has one loop; a TestClient has one per request): the slot is handed over on the
    waiter's own loop."""

    limit: int | None = None
    queue: int | None = None
    running: int = 0
    users: int = 0  # requests holding, waiting for, or about to ask for a slot (Admission drops it at 0)
    waiters: deque = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def enter(self) -> bool:
        """Take a slot, waiting in the queue for one; False at once when the queue is full too."""
        with self.lock:
            if (self.limit is None or self.running < self.limit) and not self.waiters:
                self.running += 1
                return True
            if self.queue is not None and len(self.waiters) >= self.queue:
                return False
            turn = asyncio.get_running_loop().create_future()
            self.waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            with self.lock:
                queued = turn in self.waiters
                if queued:
                    self.waiters.remove(turn)
            if not queued and turn.done() and not turn.cancelled():  # handed over just before the cancel: ours
                self.leave()
            raise  # (a turn cancelled after it left the queue is passed on by _hand)
        return True

    def leave(self) -> None:
        """Hand the slot to the first waiter, or free it."""
        with self.lock:
            if not self.waiters:
                self.running -= 1
                return
            turn = self.waiters.popleft()
        turn.get_loop().call_soon_threadsafe(self._hand, turn)

    def _hand(self, turn: asyncio.Future) -> None:
        if turn.done():  # its request was cancelled meanwhile: the slot goes on to the next
            self.leave()
        else:
            turn.set_result(None)


@dataclass
class TenantLimits:
    name: str
    inflight: int | None
    queued: int | None
    until: float


class Admission:
    def __init__(
        self,
        registry,
        per_replica: int = PER_REPLICA,
        deployment_queue: int | None = DEPLOYMENT_QUEUE,
        threads: int = DATA_PLANE_THREADS,
    ):
        self.registry = registry
        self.per_replica, self.deployment_queue, self.threads = per_replica, deployment_queue, threads
        self.tenants: dict[int, Gate] = {}
        self.deployments: dict[int, Gate] = {}
        self._gates = threading.Lock()
        self._limits: dict[int, TenantLimits] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="hamr-data-plane", initializer=_lower_priority
        )

    def forget(self, tenant_id: int) -> None:
        """The tenant's limits changed: read them again at its next request."""
        self._limits.pop(tenant_id, None)

    async def _tenant_limits(self, tenant_id: int) -> TenantLimits:
        known = self._limits.get(tenant_id)
        if known is None or known.until < time.monotonic():
            row = await run_in_threadpool(self.registry.get_tenant, tenant_id)
            known = TenantLimits(
                row.name if row else str(tenant_id),
                row.max_inflight_requests if row else 0,
                row.max_queued_requests if row else 0,
                time.monotonic() + LIMITS_CACHE_S,
            )
            self._limits[tenant_id] = known
        return known

    @asynccontextmanager
    async def slot(self, tenant_id: int, deployment_id: int, replicas: int = 1, expected_s: float | None = None):
        """Hold a slot of the tenant and of the deployment while the request runs; Busy when both are full.
        `replicas`: the deployment's ready replicas; `expected_s`: when a request sent now would be done
        (the serving replica's estimate), for Retry-After."""
        limits = await self._tenant_limits(tenant_id)
        with self._gates:
            tenant = self.tenants.setdefault(tenant_id, Gate())
            deployment = self.deployments.setdefault(deployment_id, Gate(queue=self.deployment_queue))
            tenant.limit, tenant.queue = limits.inflight, limits.queued
            deployment.limit = self.per_replica * max(replicas, 1)
            tenant.users += 1
            deployment.users += 1
        retry = expected_s or 1.0
        try:
            if not await tenant.enter():
                raise Busy(
                    f"tenant {limits.name} has {tenant.running} deployment request(s) running and "
                    f"{len(tenant.waiters)} waiting, its limits (max_inflight_requests {limits.inflight}, "
                    f"max_queued_requests {limits.queued}); retry after {math.ceil(retry)} s",
                    retry,
                )
            try:
                if not await deployment.enter():
                    raise Busy(
                        f"deployment {deployment_id} has {deployment.running} request(s) running and "
                        f"{len(deployment.waiters)} waiting, the pool's limits ({deployment.limit} running for "
                        f"{max(replicas, 1)} replica(s), {self.deployment_queue} waiting); retry after "
                        f"{math.ceil(retry)} s",
                        retry,
                    )
                try:
                    yield
                finally:
                    deployment.leave()
            finally:
                tenant.leave()
        finally:
            self._done(tenant_id, deployment_id)

    def _done(self, tenant_id: int, deployment_id: int) -> None:
        """A request is through with its gates: drop the gates no request uses any more."""
        with self._gates:
            for gates, key in ((self.tenants, tenant_id), (self.deployments, deployment_id)):
                gate = gates[key]
                gate.users -= 1
                if gate.users == 0:
                    del gates[key]


__all__ = ["DATA_PLANE_THREADS", "Admission", "Busy", "Gate", "run_in"]
