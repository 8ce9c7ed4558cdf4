"""The pool's declared contracts: what the loop, the Dispatcher and the ReplicaHost ask of a node kind.

A node kind (local, remote, Ray: hamr/pool/nodes/) provides four things, and nothing else of it is
reached by name from the rest of the pool:

- `Executor`: what a node's `Dispatcher` runs jobs through. It starts a device's worker and says
  which busy workers have a reply to read. `LocalWorkers` (worker processes on this machine),
  `RemoteNode` (a `hamr agent` over HTTP) and `RayNode` (a Ray actor on the node).
- `DeviceWorker`: one device's worker for one tenant, as the Dispatcher sees it: it takes one job
  request at a time and answers the job reply (`hamr.pool.sessions.job_done / job_failed`), its outputs written
  as .npy files in the request's OUTPUTS/attempt-N. `WorkerProcess`, `RemoteWorker`, `RayWorker`.
- `ReplicaSession`: a deployment replica loaded (and warmed) somewhere, as a `ReplicaHost` runs it:
  a `hamr.Session` in this process, a `RemoteSession` (in an agent), a `RaySession` (in a Ray actor).
  A `ReplicaOpener` loads one for a replica placed on the node.
- `NodeGroup`: what the pool's loop (hamr/pool/control/loop.py) drives: the nodes of one kind, or
  several kinds together. `Dispatcher` (one node), `RemoteNodes`, `RayPool`, `LocalAndRemote`.

The protocols are `runtime_checkable`; tests/pool/unit/test_pool_contracts.py checks every implementation
against its protocol's members.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from hamr.pool.nodes.local.staging import Staging
    from hamr.pool.registry import Registry, ReplicaView


@runtime_checkable
class DeviceWorker(Protocol):
    """One device's worker for one tenant: one job at a time."""

    device: str  # the device's local id (cpu, opencl:0)

    def alive(self) -> bool:
        """It can take a job (its process runs, its node's agent is there)."""
        ...

    def submit(self, request: dict) -> None:
        """Send one job request ({job, attempt, shard, shards, executable, inputs, outputs}); WorkerDied if gone."""
        ...

    def result(self, timeout: float | None = None) -> dict:
        """The job reply to the request sent; TimeoutError when none within `timeout`, WorkerDied if it died."""
        ...

    def kill(self) -> None:
        """Stop now; a reply still coming is not wanted."""
        ...

    def close(self) -> None:
        """Stop once idle."""
        ...


@runtime_checkable
class Executor(Protocol):
    """What a node's Dispatcher runs jobs through: its devices' workers."""

    gangs: bool  # it runs several shards of one attempt at once (one per device): gang jobs

    def start(
        self, local_id: str, env: dict | None, staging: Staging | None = None, protect: list[Path] | None = None
    ) -> DeviceWorker:
        """A new worker for a device; `staging`, `protect`: a local worker's sandbox (others ignore them)."""
        ...

    def ready(self, workers: dict[str, DeviceWorker], wait: float) -> list[str]:
        """The devices among `workers` (busy ones) with a reply to read, waiting up to `wait` s for one."""
        ...

    def node_labels(self) -> dict:
        """Labels this executor adds to its node's heartbeat (the local one: how its workers are contained)."""
        ...


@runtime_checkable
class ReplicaSession(Protocol):
    """A deployment replica's loaded session, wherever it runs."""

    target: str

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs of one request; ReplicaGone when its remote side is gone."""
        ...

    def close(self) -> None: ...


ReplicaOpener = Callable[["ReplicaView"], ReplicaSession]
"""Loads (and warms) a replica placed on a node: a ReplicaHost's `opener`."""


@runtime_checkable
class NodeGroup(Protocol):
    """The nodes the pool's loop drives: heartbeats, dispatch rounds, and waits."""

    registry: Registry

    @property
    def replica_hosts(self) -> list:
        """The ReplicaHosts (hamr/pool/dispatch/replicas.py) of its nodes, for the service (one list object:
        it grows as nodes join)."""
        ...

    def refresh(self) -> Any:
        """Find nodes that joined (and replace ones whose runtime died); Ray's only, a no-op elsewhere."""
        ...

    def heartbeat(self) -> None:
        """Report its nodes' devices to the registry (or mark the silent ones lost)."""
        ...

    def step(self) -> int:
        """One dispatch round on each node; how many things happened."""
        ...

    def busy(self) -> bool:
        """A job runs on one of its nodes."""
        ...

    def loading(self) -> bool:
        """A replica is loading here (the loop then waits at most BUSY_WAIT_S)."""
        ...

    def wait_for_replies(self, timeout: float) -> None:
        """Return when a worker has a reply to read, or after `timeout` s."""
        ...

    def close(self) -> None: ...


__all__ = ["DeviceWorker", "Executor", "NodeGroup", "ReplicaOpener", "ReplicaSession"]
