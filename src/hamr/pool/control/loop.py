"""The pool's own loop (`hamr pool up`): heartbeats, lost nodes, the deployment reconciler and dispatch rounds.

It runs on one thread next to the HTTP service. A round that did something is followed by
another at once. Idle, the loop waits longer each round (10 ms doubling to 0.5 s), so an idle
pool costs the request path almost nothing; while a job runs it waits on the workers' replies
(at most 50 ms), and the service wakes it at once when a request changes what it should do (a job
submitted, a deployment created or scaled, a device drained).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hamr.pool.contracts import NodeGroup
from hamr.pool.control.deployments import Reconciler

RECONCILE_EVERY_S = 0.5
FIRST_WAIT_S, LONGEST_WAIT_S, BUSY_WAIT_S = 0.01, 0.5, 0.05


def run_pool_loop(
    nodes: NodeGroup,
    stop: threading.Event,
    heartbeat_timeout: float,
    wake: threading.Event,
    report: Callable[[str], None] = print,
) -> None:
    """`nodes`: a Dispatcher (one node), a RayPool, RemoteNodes, or the local and remote nodes together
    (LocalAndRemote): the NodeGroup contract (hamr/pool/contracts.py)."""
    reconciler = Reconciler(nodes.registry)
    heartbeat_at = reconciled_at = time.monotonic()
    idle = 0
    while not stop.is_set():
        try:
            woken = wake.is_set()
            wake.clear()
            done = 0
            if woken or time.monotonic() - reconciled_at > RECONCILE_EVERY_S:
                done += reconciler.step()
                reconciled_at = time.monotonic()
            if time.monotonic() - heartbeat_at > heartbeat_timeout / 3:
                nodes.refresh()  # a RayPool: actors on joined nodes, and where one died
                nodes.heartbeat()
                nodes.registry.mark_lost_nodes(heartbeat_timeout)  # their devices take no more work
                heartbeat_at = time.monotonic()
            done += nodes.step()
            if done:
                idle = 0
                continue
            idle += 1
            wait = min(FIRST_WAIT_S * 2 ** min(idle, 16), LONGEST_WAIT_S)
            if nodes.busy():
                nodes.wait_for_replies(min(wait, BUSY_WAIT_S))
                continue
            if nodes.loading():
                wait = min(wait, BUSY_WAIT_S)
            wake.wait(wait)
        except Exception as exc:  # noqa: BLE001 - the loop must outlive one bad round; it says why
            report(f"hamr pool: dispatcher round failed: {type(exc).__name__}: {exc}")
            stop.wait(1.0)


__all__ = ["run_pool_loop"]
