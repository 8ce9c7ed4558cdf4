"""The pool across machines, on Ray: one node actor per Ray node, one Dispatcher per node.

    pool = RayPool(registry, address="HEAD:6379")   # ray.init(address=...) unless Ray is up
    pool.refresh()                                    # a node actor on every alive Ray node, its devices registered
    pool.run_until_idle()                             # or pool.step() in the pool loop

`RayPool` is a NodeGroup, `RayNode` an Executor, `RayWorker` a DeviceWorker and `RaySession` a
ReplicaSession (hamr/pool/contracts.py). Messages and docs/pool.md call the node actor "the hamr
agent" of its node, as it plays the part a `hamr agent` plays on a remote node.

Each node actor (`NodeActor`) is a Ray actor pinned to its node with
`NodeAffinitySchedulingStrategy(node_id, soft=False)`. It discovers the node's devices with
hamr's drivers (`discover()`) and runs jobs there through `hamr.Session`. The driver process
(`hamr pool up --ray`) keeps the registry: it registers each node (name `ray-<node id>`) and
heartbeats it with what the node actor reports, and runs one `Dispatcher` per node whose executor
is that node's `RayNode`. Ray is the only transport between machines: the executable goes as
bytes in Ray's object store, inputs and outputs as numpy arrays in Ray calls; the driver writes
the outputs to the run directory as .npy (never pickle in our files), so the Dispatcher records
them as it records a local worker's.

Devices are not Ray custom resources: hamr's scheduler already picks the device, and Ray's part
is to run the work on the node that owns it, which node affinity does with no `ray start
--resources` on any node. A node actor owns its node's devices (the registry holds one job per
device). A node actor that dies (killed, its node gone) fails its in-flight calls with a Ray actor
error: the job's worker is `WorkerDied`, the Dispatcher requeues it, and the node is heartbeaten
with no devices (health 'missing'), so the next attempt runs elsewhere. `refresh()` starts a new
node actor on a node that lost its node actor, and on nodes that joined. docs/pool.md ("Across machines on Ray").

Deployment replicas on a Ray node live in its node actor too: the node's Dispatcher hosts them with a
ReplicaHost whose sessions are `RaySession`s (load and warm in the node actor, each request one Ray
call). A request to a replica whose node actor died raises ReplicaGone and goes to another replica.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import ray
from ray.exceptions import GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hamr.errors import HamrError, first_line
from hamr.pool.dispatch.dispatcher import Dispatcher
from hamr.pool.dispatch.replicas import ReplicaGone, ReplicaHost
from hamr.pool.drivers import DeviceReport
from hamr.pool.nodes.local.workers import WorkerDied
from hamr.pool.registry import ANY_TENANT, Registry, ReplicaView
from hamr.pool.sessions import SessionCache, error_line, job_done, job_failed, warm_up
from hamr.runtime.npy_io import read_inputs

NODE_PREFIX = "ray-"


def node_name(node_id: str) -> str:
    """The registry's name of a Ray node: `ray-` and its Ray node id (hex)."""
    return NODE_PREFIX + node_id


@ray.remote(num_cpus=0, max_concurrency=16)
class NodeActor:
    """hamr on one Ray node: its devices, and the jobs sent to them (one at a time per device). The Ray
    kind's counterpart of a `hamr agent` (not called an agent in the code: that name is the process's)."""

    def __init__(self, before_run: Callable[[], None] | None = None):
        self.before_run = before_run  # RayPool's: called before each run
        self.sessions = SessionCache()  # (executable path, device) -> hamr.Session

    def where(self) -> dict:
        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "hostname": socket.gethostname(),
        }

    def discover(self) -> list[dict]:
        from hamr.pool.drivers import discover

        return [d.to_json() for d in discover().devices]

    def _session(self, device: str, key: str, executable: bytes):
        return self.sessions.get((key, device), lambda: bytes(executable), device)

    def load(self, device: str, key: str, executable: bytes) -> dict:
        """Load (and warm, on example inputs) a deployment replica's session; its target, or the error."""
        try:
            session = self._session(device, key, executable)
        except (HamrError, OSError, ValueError) as exc:
            return {"ok": False, "error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}
        warm_up(session)
        return {"ok": True, "target": session.target}

    def run(self, device: str, key: str, executable: bytes, feeds: dict) -> dict:
        reply = {**self.where()}
        try:
            if self.before_run is not None:
                self.before_run()
            session = self._session(device, key, executable)
            start = time.perf_counter()
            outputs = session.run(feeds)
            latency = time.perf_counter() - start
            return {
                **reply,
                "ok": True,
                "latency_s": latency,
                "device": session.device.id,
                "target": session.target,
                "outputs": {name: value for name, value in outputs.items()},
            }
        except (HamrError, KeyError, TypeError, ValueError, OSError) as exc:
            return {**reply, "ok": False, "error": error_line(exc)}


class RayWorker:
    """A device's worker on a Ray node, as the Dispatcher sees it (WorkerProcess's interface)."""

    def __init__(self, node: RayNode, local_id: str):
        self.node, self.device = node, local_id
        self.ref = None  # the in-flight call
        self.request: dict | None = None

    def alive(self) -> bool:
        return not self.node.dead

    def submit(self, request: dict) -> None:
        if self.node.dead:
            raise WorkerDied(f"the hamr agent of {self.node.name} is gone: {self.node.dead}")
        feeds = read_inputs(request.get("inputs") or {})
        executable = self.node.pool.executable(request["executable"])
        self.request = request
        self.ref = self.node.actor.run.remote(self.device, request["executable"], executable, feeds)

    def result(self, timeout: float | None = None) -> dict:
        request, ref = self.request, self.ref
        if ref is None:
            raise WorkerDied(f"worker for {self.device} on {self.node.name} has no job")
        try:
            reply = ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            raise TimeoutError(
                f"worker for {self.device} on {self.node.name} gave no reply within {timeout} s"
            ) from None
        except RayError as exc:  # the actor died, its node is gone, or the call failed
            self.ref = None
            self.node.died(first_line(exc))
            raise WorkerDied(
                f"the hamr agent of {self.node.name} died while running {self.device}: {type(exc).__name__}"
            ) from exc
        self.ref = None
        job, attempt = request["job"], int(request["attempt"])
        self.node.pool.ran[(job, attempt)] = {k: reply.get(k) for k in ("node_id", "ip", "hostname", "device")}
        if not reply["ok"]:
            return job_failed(job, attempt, reply.get("error", "the agent gave no error"))
        return job_done(
            job, attempt, request["outputs"], reply["outputs"], reply["latency_s"], reply["device"], reply["target"]
        )

    def kill(self) -> None:
        if self.ref is not None:
            ray.cancel(self.ref, force=False)  # a stale attempt: its reply is not wanted
            self.ref = None

    def close(self) -> None:
        self.ref = None


class RaySession:
    """A deployment replica's session in a Ray node's node actor, as a ReplicaHost uses one (run, target, close)."""

    def __init__(self, node: RayNode, device: str, key: str, executable, target: str):
        self.node, self.device, self.key, self.executable, self.target = node, device, key, executable, target

    def run(self, feeds: dict) -> dict:
        if self.node.dead:
            raise ReplicaGone(f"the hamr agent of {self.node.name} is gone: {self.node.dead}")
        try:
            reply = ray.get(
                self.node.actor.run.remote(self.device, self.key, self.executable, feeds),
                timeout=self.node.pool.call_timeout_s,
            )
        except RayError as exc:
            self.node.died(f"{type(exc).__name__}: a replica's request failed")
            raise ReplicaGone(f"the hamr agent of {self.node.name} died: {type(exc).__name__}") from exc
        if not reply["ok"]:
            raise HamrError(reply.get("error", "the agent gave no error"))
        return reply["outputs"]

    def close(self) -> None:
        pass  # the node actor keeps the session for the node's jobs and replicas of the same executable


class RayNode:
    """One Ray node of the pool: its node actor, and the executor of its Dispatcher.

    A gang job's shards run at once, one call per device (the node actor takes up to 16 calls at a time).
    """

    gangs = True

    def __init__(self, pool: RayPool, node_id: str, actor):
        self.pool, self.node_id, self.actor = pool, node_id, actor
        self.name = node_name(node_id)
        self.dead = ""  # why the node actor is gone, once it is
        self.where: dict = {}

    def start(self, local_id: str, env: dict | None, staging=None, protect=None) -> RayWorker:
        # staging, protect: a local worker's sandbox; this node's jobs run elsewhere (docs/pool.md)
        if self.dead:
            raise WorkerDied(f"the hamr agent of {self.name} is gone: {self.dead}")
        return RayWorker(self, local_id)

    def node_labels(self) -> dict:
        return {}  # its jobs run in the node actor, not in contained worker processes

    def ready(self, workers: dict[str, RayWorker], wait: float) -> list[str]:
        refs = {w.ref: device for device, w in workers.items() if w.ref is not None}
        if not refs:
            time.sleep(wait)
            return []
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=wait)
        if ready:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        return [refs[r] for r in ready]

    def open_replica(self, replica: ReplicaView) -> RaySession:
        """A deployment replica, loaded and warmed in this node's node actor (ReplicaHost's `opener`)."""
        if self.dead:
            raise ReplicaGone(f"the hamr agent of {self.name} is gone: {self.dead}")
        key = str(self.pool.registry.executable_file(ANY_TENANT, replica.executable_id))
        executable = self.pool.executable(key)
        try:
            loaded = ray.get(
                self.actor.load.remote(replica.local_id, key, executable), timeout=self.pool.call_timeout_s
            )
        except RayError as exc:
            self.died(f"{type(exc).__name__}: loading a replica failed")
            raise ReplicaGone(f"the hamr agent of {self.name} died while loading a replica") from exc
        if not loaded["ok"]:
            raise HamrError(loaded["error"])
        return RaySession(self, replica.local_id, key, executable, loaded["target"])

    def died(self, why: str) -> None:
        """The node actor is gone: its devices take no placements (health 'missing') until a new node actor reports."""
        if not self.dead:
            self.dead = why or "actor died"
            self.pool.registry.heartbeat(self.name, [], address=self.where.get("ip"))
            self.pool.registry.record_event("node.agent_died", f"node:{self.name}", None, {"why": self.dead})


class RayPool:
    """The registry's side of a Ray cluster: a node actor per Ray node, a Dispatcher per node.

    `before_run`, if given, is sent to each node actor, which calls it before every run (the
    tests pass a sleep, to kill an actor mid-job)."""

    def __init__(
        self,
        registry: Registry,
        address: str | None = None,
        policy: str = "max_throughput",
        before_run: Callable[[], None] | None = None,
        call_timeout_s: float = 120.0,
        heartbeat_timeout_s: float = 10.0,
    ):
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
        self.registry, self.policy, self.before_run = registry, policy, before_run
        self.call_timeout_s, self.heartbeat_timeout_s = call_timeout_s, heartbeat_timeout_s
        self.nodes: dict[str, RayNode] = {}  # Ray node id -> its node
        self.dispatchers: dict[str, Dispatcher] = {}
        self.replica_hosts: list[ReplicaHost] = []  # one per node, for the service (kept as one list object)
        self.ran: dict[
            tuple[int, int], dict
        ] = {}  # (job, attempt) -> where the node actor ran it (node id, ip, device)
        self._executables: dict[str, object] = {}  # executable path -> its bytes in Ray's object store

    def executable(self, path: str):
        ref = self._executables.get(path)
        if ref is None:
            ref = self._executables[path] = ray.put(Path(path).read_bytes())
        return ref

    # -- nodes --

    def refresh(self) -> list[str]:
        """A node actor on every alive Ray node lacking a live one; returns the names of the nodes (re)joined."""
        joined = []
        for info in ray.nodes():
            node_id = info["NodeID"]
            if not info.get("Alive") or (node_id in self.nodes and not self.nodes[node_id].dead):
                continue
            actor = NodeActor.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                max_restarts=0,
            ).remote(self.before_run)
            node = RayNode(self, node_id, actor)
            try:
                node.where = ray.get(actor.where.remote(), timeout=self.call_timeout_s)
                reports = self._reports(node)
            except RayError as exc:
                ray.kill(actor)
                self.registry.record_event(
                    "node.agent_failed", f"node:{node.name}", None, {"why": str(exc).splitlines()[0]}
                )
                continue
            old = self.dispatchers.pop(node_id, None)
            if old is not None:
                if old.replicas in self.replica_hosts:
                    self.replica_hosts.remove(old.replicas)
                old.close()
            self.nodes[node_id] = node
            dispatcher = Dispatcher(
                self.registry,
                node.name,
                policy=self.policy,
                reports=reports,
                executor=node,
                address=node.where.get("ip"),
                serve_replicas=True,
                open_replica=node.open_replica,
            )
            self.dispatchers[node_id] = dispatcher
            self.replica_hosts.append(dispatcher.replicas)
            joined.append(node.name)
        return joined

    def _reports(self, node: RayNode, timeout: float | None = None) -> list[DeviceReport]:
        found = ray.get(node.actor.discover.remote(), timeout=timeout or self.call_timeout_s)
        return [DeviceReport(**{**d, "targets": tuple(d["targets"])}) for d in found]

    def heartbeat(self) -> None:
        """Each live node actor reports its node's devices again; a node actor that does not answer is dead."""
        for node_id, node in self.nodes.items():
            if node.dead:
                continue
            try:
                self.dispatchers[node_id].heartbeat(self._reports(node, self.heartbeat_timeout_s))
            except RayError as exc:  # GetTimeoutError included: a node actor that does not answer is taken for dead
                node.died(f"{type(exc).__name__}: heartbeat failed")

    # -- the pool loop's side (contracts.NodeGroup) --

    def step(self) -> int:
        return sum(d.step() for d in list(self.dispatchers.values()))

    def busy(self) -> bool:
        return any(d.busy() for d in self.dispatchers.values())

    def loading(self) -> bool:
        return False  # its replicas load in the node actors; the loop does not wait on them

    def wait_for_replies(self, timeout: float) -> None:
        """Return when a node actor's call for a job is done, or after `timeout` s."""
        refs = [
            w.ref
            for d in list(self.dispatchers.values())
            for device, w in list(d.workers.items())
            if device in d.runs and w.ref is not None
        ]
        if refs:
            ray.wait(refs, num_returns=1, timeout=timeout)
        else:
            time.sleep(timeout)

    def run_until_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.step() or self.busy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray pool is not idle after {timeout} s")
            time.sleep(0.02)

    def actor(self, node_id: str):
        """The node actor (NodeActor) of a Ray node."""
        return self.nodes[node_id].actor

    def close(self, kill_actors: bool = True) -> None:
        for dispatcher in self.dispatchers.values():
            dispatcher.close()
        if kill_actors:
            for node in self.nodes.values():
                try:
                    ray.kill(node.actor)
                except RayError:
                    pass
        self.dispatchers.clear()
        self.replica_hosts.clear()
        self.nodes.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["NodeActor", "RayNode", "RayPool", "RaySession", "RayWorker", "node_name"]
