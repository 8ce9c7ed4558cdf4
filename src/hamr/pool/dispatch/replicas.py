"""The replicas placed on one node's devices, loaded as Sessions in this process, serving requests.

`ReplicaHost(registry, node)` belongs to that node's Dispatcher (which calls `sync()` each
round). A pending replica is loaded on a loader thread (the Session, then one warm-up run on
example inputs, so the first request does not pay for buffers and kernel builds) and turns
ready; one that fails to load turns failed, with the error. A replica the reconciler stopped
(drained device, lost node, scale-down) is dropped from serving at the next sync; a deleted
deployment's replicas at once, when the service's DELETE calls `retire`. Requests already
running on a dropped replica finish. `pick(deployment)` gives the ready replica that
would finish a request soonest (requests running on it, plus one, times its moving-average run
time; one not yet measured goes first), and `run` runs the request there. Busy time is summed
in memory and written to the registry about once a second.

By default a replica is a Session in this process (the pool's own node; hamr/pool/sessions.py
loads and warms it). `opener` (contracts.ReplicaOpener) replaces that: hamr.pool.nodes.ray.cluster
opens a replica in the node actor of the Ray node owning the device, and hamr.pool.nodes.remote in
the node's `hamr agent`; its `run` goes there; a replica whose remote side is gone raises ReplicaGone, and the request
goes to another replica.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass, field

from hamr.errors import HamrError, first_line
from hamr.pool.contracts import ReplicaOpener, ReplicaSession
from hamr.pool.dispatch.busy import BusyTime
from hamr.pool.registry import ANY_TENANT, InvalidTransition, NotFound, Registry, ReplicaView
from hamr.pool.registry.models import REPLICA_FAILED, REPLICA_PENDING, REPLICA_READY
from hamr.pool.sessions import open_session


class NoReplica(HamrError):
    """No ready replica of the deployment is served here."""


class ReplicaGone(HamrError):
    """A replica's remote side (its agent, its node) is gone; the request can go to another replica."""


INLINE_BELOW_S = 0.0005  # requests that run faster than this go on the caller's thread (no worker-thread hop)


@dataclass
class Hosted:
    view: ReplicaView
    session: ReplicaSession  # hamr.Session, or a node kind's (RemoteSession, RaySession)
    served: int = 0
    seconds: float = 0.0  # moving average of its run time (0 until it has run: tried first)
    running: int = 0  # requests on it now

    def expected(self) -> float:
        """When a request sent now would be done: the queue ahead of it and its own run."""
        return (self.running + 1) * self.seconds

    def quick(self) -> bool:
        """Known to run in under INLINE_BELOW_S: a worker-thread hop would cost more than the run."""
        return self.served > 0 and self.seconds < INLINE_BELOW_S


@dataclass
class ReplicaHost:
    registry: Registry
    node: str
    busy: BusyTime | None = None  # shared with the node's Dispatcher, which feeds its jobs' time into it
    warm: bool = True
    opener: ReplicaOpener | None = None  # replica -> its session (run, target, close)
    hosted: dict[int, Hosted] = field(default_factory=dict)  # replica id -> its loaded session
    by_deployment: dict[int, list[int]] = field(default_factory=dict)  # deployment -> its ready replicas here
    tenants: dict[int, int] = field(default_factory=dict)  # deployment -> its tenant (never changes)
    retired: set[int] = field(default_factory=set)  # deleted deployments (ids are never reused): never served again

    def __post_init__(self) -> None:
        self._loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"hamr-replicas-{self.node}")
        self._loading: dict[int, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self.busy = self.busy or BusyTime(self.registry)

    # -- the agent's side --

    def sync(self) -> int:
        """Load what was placed here, drop what was stopped; returns how many replicas changed."""
        live = {r.id: r for r in self.registry.list_replicas(ANY_TENANT, node=self.node)}
        changed = 0
        for replica_id, future in list(self._loading.items()):
            if future.done():
                del self._loading[replica_id]
                changed += self._loaded(live.get(replica_id), replica_id, future)
        for replica in live.values():
            if replica.deployment_id in self.retired:  # read before its deletion committed
                continue
            self.tenants[replica.deployment_id] = replica.tenant_id
            if replica.id not in self.hosted and replica.id not in self._loading:
                self._loading[replica.id] = self._loader.submit(self._load, replica)
        for replica_id in [r for r in self.hosted if r not in live]:
            self._drop(replica_id)
            changed += 1
        self.busy.flush(force=False)
        return changed

    def _load(self, replica: ReplicaView) -> ReplicaSession:
        if self.opener is not None:
            return self.opener(replica)
        return open_session(
            self.registry.executable_file(ANY_TENANT, replica.executable_id), replica.local_id, warm=self.warm
        )

    def _loaded(self, replica: ReplicaView | None, replica_id: int, future: concurrent.futures.Future) -> int:
        try:
            session = future.result()
        except ReplicaGone:  # its node's agent is gone: it stays pending (tried again, or moved once the node is lost)
            return 0
        except Exception as exc:  # noqa: BLE001 - any load error fails the replica, with its line
            detail = first_line(exc, with_type=False)
            self._move(replica_id, REPLICA_FAILED, f"loading failed: {detail}")
            return 1
        if replica is None or replica.deployment_id in self.retired:  # stopped while it loaded
            session.close()
            return 0
        if replica.state == REPLICA_PENDING and not self._move(
            replica_id, REPLICA_READY, f"{replica.reason}; loaded as {session.target}"
        ):
            session.close()
            return 0
        with self._lock:
            if replica.deployment_id in self.retired:
                session.close()
                return 0
            self.hosted[replica_id] = Hosted(replica, session)
            self.by_deployment.setdefault(replica.deployment_id, []).append(replica_id)
        return 1

    def _move(self, replica_id: int, state: str, reason: str) -> bool:
        try:
            self.registry.set_replica_state(replica_id, state, reason)
            return True
        except (InvalidTransition, NotFound):  # stopped meanwhile
            return False

    def _drop(self, replica_id: int) -> None:
        with self._lock:
            hosted = self.hosted.pop(replica_id, None)
            if hosted is None:
                return
            ready = self.by_deployment.get(hosted.view.deployment_id, [])
            if replica_id in ready:
                ready.remove(replica_id)
        # The Session is not closed here: a request may still be running on it; it goes with its last reference.

    def retire(self, deployment_id: int) -> None:
        """The deployment was deleted: stop serving it now, not at the next sync (requests running on it finish)."""
        with self._lock:
            self.retired.add(deployment_id)
            replica_ids = [r for r, h in self.hosted.items() if h.view.deployment_id == deployment_id]
        for replica_id in replica_ids:
            self._drop(replica_id)

    def close(self) -> None:
        self._loader.shutdown(wait=True, cancel_futures=True)
        self.busy.flush()
        with self._lock:
            sessions = [h.session for h in self.hosted.values()]
            self.hosted.clear()
            self.by_deployment.clear()
        for session in sessions:
            session.close()

    # -- serving --

    def loading(self) -> bool:
        return bool(self._loading)

    def expected(self, deployment_id: int) -> float | None:
        """The soonest a request sent here would be done (seconds), or None without a ready replica."""
        ready = [self.hosted[r] for r in self.by_deployment.get(deployment_id) or () if r in self.hosted]
        return min((h.expected() for h in ready), default=None)

    def pick(self, deployment_id: int) -> Hosted:
        """The ready replica that would finish a request soonest; NoReplica when there is none."""
        with self._lock:
            ready = [self.hosted[r] for r in self.by_deployment.get(deployment_id) or () if r in self.hosted]
            if not ready:
                raise NoReplica(f"deployment {deployment_id} has no ready replica on node {self.node}")
            hosted = min(ready, key=Hosted.expected)
            hosted.running += 1
        return hosted

    def run(self, hosted: Hosted, feeds: dict) -> dict:
        """Run a request on the replica `pick` gave."""
        start = time.perf_counter()
        try:
            outputs = hosted.session.run(feeds)
        except ReplicaGone as exc:
            self._drop(hosted.view.id)  # the reconciler stops it once its node's devices turn missing
            raise NoReplica(
                f"replica {hosted.view.id} of deployment {hosted.view.deployment_id} is gone: {exc}"
            ) from exc
        finally:
            with self._lock:
                hosted.running -= 1
        spent = time.perf_counter() - start
        self.busy.add(hosted.view.device, spent)
        with self._lock:
            hosted.served += 1
            hosted.seconds = spent if hosted.served == 1 else 0.9 * hosted.seconds + 0.1 * spent
        return outputs


__all__ = ["Hosted", "NoReplica", "ReplicaGone", "ReplicaHost"]
