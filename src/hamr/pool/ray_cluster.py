"""The pool across machines, on Ray: one hamr agent actor per Ray node, one Dispatcher per node.

    pool = RayPool(registry, address="HEAD:6379")   # ray.init(address=...) unless Ray is up
    pool.refresh()                                    # an agent on every alive Ray node, its devices registered
    pool.run_until_idle()                             # or pool.step() in the agent loop

Each agent (`HamrAgent`) is a Ray actor pinned to its node with
`NodeAffinitySchedulingStrategy(node_id, soft=False)`. It discovers the node's devices with
hamr's drivers (`discover()`) and runs jobs there through `hamr.Session`. The driver process
(`hamr pool up --ray`) keeps the registry: it registers each node (name `ray-<node id>`) and
heartbeats it with what the agent reports, and runs one `Dispatcher` per node whose executor
is that node's `RayNode`. Ray is the only transport between machines: the executable goes as
bytes in Ray's object store, inputs and outputs as numpy arrays in Ray calls; the driver writes
the outputs to the run directory as .npy (never pickle in our files), so the Dispatcher records
them as it records a local worker's.

Devices are not Ray custom resources: hamr's scheduler already picks the device, and Ray's part
is to run the work on the node that owns it, which node affinity does with no `ray start
--resources` on any node. An agent owns its node's devices (the registry holds one job per
device). An agent that dies (killed, its node gone) fails its in-flight calls with a Ray actor
error: the job's worker is `WorkerDied`, the Dispatcher requeues it, and the node is heartbeaten
with no devices (health 'missing'), so the next attempt runs elsewhere. `refresh()` starts a new
agent on a node that lost its agent, and on nodes that joined. docs/pool.md ("Across machines on Ray").

Deployment replicas on a Ray node live in its agent too: the node's Dispatcher hosts them with a
ReplicaHost whose sessions are `RaySession`s (load and warm in the agent, each request one Ray
call). A request to a replica whose agent died raises ReplicaGone and goes to another replica.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ray
from ray.exceptions import GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hamr.pool.dispatcher import Dispatcher
from hamr.pool.drivers import DeviceReport
from hamr.errors import HamrError
from hamr.pool.registry import ANY_TENANT, Registry, ReplicaView
from hamr.pool.replicas import ReplicaGone, ReplicaHost
from hamr.pool.workers import WorkerDied
from hamr.runtime.npy_io import read_inputs, write_outputs

NODE_PREFIX = "ray-"


def node_name(node_id: str) -> str:
    """The registry's name of a Ray node: `ray-` and its Ray node id (hex)."""
    return NODE_PREFIX + node_id


@ray.remote(num_cpus=0, max_concurrency=16)
class HamrAgent:
    """hamr on one Ray node: its devices, and the jobs sent to them (one at a time per device)."""

    def __init__(self, before_run: Callable[[], None] | None = None):
        self.before_run = before_run  # RayPool's: called before each run
        self.sessions: dict[tuple[str, str], object] = {}
        self.lock = threading.Lock()

    def where(self) -> dict:
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname()}

    def discover(self) -> list[dict]:
        from hamr.pool.drivers import discover

        return [d.to_json() for d in discover().devices]

    def _session(self, device: str, key: str, executable: bytes):
        from hamr.runtime.session import Session

        with self.lock:
            session = self.sessions.get((key, device))
            if session is None:
                session = self.sessions[(key, device)] = Session(bytes(executable), device=device)
        return session

    def load(self, device: str, key: str, executable: bytes) -> dict:
        """Load (and warm, on example inputs) a deployment replica's session; its target, or the error."""
        from hamr.errors import HamrError
        from hamr.runtime.example_feeds import example_feeds

        try:
            session = self._session(device, key, executable)
        except (HamrError, OSError, ValueError) as exc:
            return {"ok": False, "error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}
        try:
            session.run(example_feeds(session.signature))
        except (HamrError, ValueError):  # inputs it cannot invent; the first request warms it instead
            pass
        return {"ok": True, "target": session.target}

    def run(self, device: str, key: str, executable: bytes, feeds: dict) -> dict:
        from hamr.errors import HamrError

        reply = {**self.where()}
        try:
            if self.before_run is not None:
                self.before_run()
            session = self._session(device, key, executable)
            start = time.perf_counter()
            outputs = session.run(feeds)
            latency = time.perf_counter() - start
            return {**reply, "ok": True, "latency_s": latency, "device": session.device.id, "target": session.target,
                    "outputs": {name: value for name, value in outputs.items()}}
        except (HamrError, KeyError, TypeError, ValueError, OSError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {**reply, "ok": False, "error": detail if isinstance(exc, HamrError) else f"{type(exc).__name__}: {detail}"}


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
        self.ref = self.node.agent.run.remote(self.device, request["executable"], executable, feeds)

    def result(self, timeout: float | None = None) -> dict:
        request, ref = self.request, self.ref
        if ref is None:
            raise WorkerDied(f"worker for {self.device} on {self.node.name} has no job")
        try:
            reply = ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            raise TimeoutError(f"worker for {self.device} on {self.node.name} gave no reply within {timeout} s") from None
        except RayError as exc:  # the actor died, its node is gone, or the call failed
            self.ref = None
            self.node.died(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            raise WorkerDied(f"the hamr agent of {self.node.name} died while running {self.device}: {type(exc).__name__}") from exc
        self.ref = None
        job, attempt = request["job"], int(request["attempt"])
        self.node.pool.ran[(job, attempt)] = {k: reply.get(k) for k in ("node_id", "ip", "hostname", "device")}
        out = {"job": job, "attempt": attempt, "ok": reply["ok"]}
        if not reply["ok"]:
            return {**out, "error": reply.get("error", "the agent gave no error")}
        final = Path(request["outputs"]) / f"attempt-{attempt}"  # as hamr/pool/worker.py writes it
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_outputs(reply["outputs"], partial)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        return {**out, "latency_s": reply["latency_s"], "device": reply["device"], "target": reply["target"],
                "outputs": str(final)}

    def kill(self) -> None:
        if self.ref is not None:
            ray.cancel(self.ref, force=False)  # a stale attempt: its reply is not wanted
            self.ref = None

    def close(self) -> None:
        self.ref = None


class RaySession:
    """A deployment replica's session in a Ray node's agent, as a ReplicaHost uses one (run, target, close)."""

    def __init__(self, node: RayNode, device: str, key: str, executable, target: str):
        self.node, self.device, self.key, self.executable, self.target = node, device, key, executable, target

    def run(self, feeds: dict) -> dict:
        if self.node.dead:
            raise ReplicaGone(f"the hamr agent of {self.node.name} is gone: {self.node.dead}")
        try:
            reply = ray.get(self.node.agent.run.remote(self.device, self.key, self.executable, feeds),
                            timeout=self.node.pool.call_timeout_s)  # fmt: skip
        except RayError as exc:
            self.node.died(f"{type(exc).__name__}: a replica's request failed")
            raise ReplicaGone(f"the hamr agent of {self.node.name} died: {type(exc).__name__}") from exc
        if not reply["ok"]:
            raise HamrError(reply.get("error", "the agent gave no error"))
        return reply["outputs"]

    def close(self) -> None:
        pass  # the agent keeps the session for the node's jobs and replicas of the same executable


class RayNode:
    """One Ray node of the pool: its agent actor, and the executor of its Dispatcher.

    A gang job's shards run at once, one call per device (the agent takes up to 16 calls at a time).
    """

    gangs = True

    def __init__(self, pool: RayPool, node_id: str, agent):
        self.pool, self.node_id, self.agent = pool, node_id, agent
        self.name = node_name(node_id)
        self.dead = ""  # why the agent is gone, once it is
        self.where: dict = {}

    def start(self, local_id: str, env: dict | None, staging=None, protect=None) -> RayWorker:
        # staging, protect: a local worker's sandbox; this node's jobs run elsewhere (docs/pool.md)
        if self.dead:
            raise WorkerDied(f"the hamr agent of {self.name} is gone: {self.dead}")
        return RayWorker(self, local_id)

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
        """A deployment replica, loaded and warmed in this node's agent (ReplicaHost's `opener`)."""
        if self.dead:
            raise ReplicaGone(f"the hamr agent of {self.name} is gone: {self.dead}")
        key = str(self.pool.registry.executable_file(ANY_TENANT, replica.executable_id))
        executable = self.pool.executable(key)
        try:
            loaded = ray.get(self.agent.load.remote(replica.local_id, key, executable), timeout=self.pool.call_timeout_s)
        except RayError as exc:
            self.died(f"{type(exc).__name__}: loading a replica failed")
            raise ReplicaGone(f"the hamr agent of {self.name} died while loading a replica") from exc
        if not loaded["ok"]:
            raise HamrError(loaded["error"])
        return RaySession(self, replica.local_id, key, executable, loaded["target"])

    def died(self, why: str) -> None:
        """The agent is gone: its devices take no placements (health 'missing') until a new agent reports."""
        if not self.dead:
            self.dead = why or "actor died"
            self.pool.registry.heartbeat(self.name, [], address=self.where.get("ip"))
            self.pool.registry.record_event("node.agent_died", f"node:{self.name}", None, {"why": self.dead})


class RayPool:
    """The registry's side of a Ray cluster: an agent per Ray node, a Dispatcher per node.

    `before_run`, if given, is pickled to each agent actor, which calls it before every run (the
    tests pass a sleep, to kill an agent mid-job)."""

    def __init__(self, registry: Registry, address: str | None = None, policy: str = "max_throughput",
                 before_run: Callable[[], None] | None = None, call_timeout_s: float = 120.0,
                 heartbeat_timeout_s: float = 10.0):  # fmt: skip
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
        self.registry, self.policy, self.before_run = registry, policy, before_run
        self.call_timeout_s, self.heartbeat_timeout_s = call_timeout_s, heartbeat_timeout_s
        self.nodes: dict[str, RayNode] = {}  # Ray node id -> its node
        self.dispatchers: dict[str, Dispatcher] = {}
        self.replica_hosts: list[ReplicaHost] = []  # one per node, for the service (kept as one list object)
        self.ran: dict[tuple[int, int], dict] = {}  # (job, attempt) -> where the agent ran it (node id, ip, device)
        self._executables: dict[str, object] = {}  # executable path -> its bytes in Ray's object store

    def executable(self, path: str):
        ref = self._executables.get(path)
        if ref is None:
            ref = self._executables[path] = ray.put(Path(path).read_bytes())
        return ref

    # -- nodes --

    def refresh(self) -> list[str]:
        """An agent on every alive Ray node lacking a live one; returns the names of the nodes (re)joined."""
        joined = []
        for info in ray.nodes():
            node_id = info["NodeID"]
            if not info.get("Alive") or (node_id in self.nodes and not self.nodes[node_id].dead):
                continue
            agent = HamrAgent.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False), max_restarts=0,
            ).remote(self.before_run)
            node = RayNode(self, node_id, agent)
            try:
                node.where = ray.get(agent.where.remote(), timeout=self.call_timeout_s)
                reports = self._reports(node)
            except RayError as exc:
                ray.kill(agent)
                self.registry.record_event("node.agent_failed", f"node:{node.name}", None, {"why": str(exc).splitlines()[0]})
                continue
            old = self.dispatchers.pop(node_id, None)
            if old is not None:
                if old.replicas in self.replica_hosts:
                    self.replica_hosts.remove(old.replicas)
                old.close()
            self.nodes[node_id] = node
            dispatcher = Dispatcher(self.registry, node.name, policy=self.policy, reports=reports, executor=node,
                                    address=node.where.get("ip"), serve_replicas=True, open_replica=node.open_replica)
            self.dispatchers[node_id] = dispatcher
            self.replica_hosts.append(dispatcher.replicas)
            joined.append(node.name)
        return joined

    def _reports(self, node: RayNode, timeout: float | None = None) -> list[DeviceReport]:
        found = ray.get(node.agent.discover.remote(), timeout=timeout or self.call_timeout_s)
        return [DeviceReport(**{**d, "targets": tuple(d["targets"])}) for d in found]

    def heartbeat(self) -> None:
        """Each live agent reports its node's devices again; an agent that does not answer is dead."""
        for node_id, node in self.nodes.items():
            if node.dead:
                continue
            try:
                self.dispatchers[node_id].heartbeat(self._reports(node, self.heartbeat_timeout_s))
            except RayError as exc:  # GetTimeoutError included: an agent that does not answer is taken for dead
                node.died(f"{type(exc).__name__}: heartbeat failed")

    # -- the loop --

    def step(self) -> int:
        return sum(d.step() for d in list(self.dispatchers.values()))

    def busy(self) -> bool:
        return any(d.busy() for d in self.dispatchers.values())

    def run_until_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.step() or self.busy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray pool is not idle after {timeout} s")
            time.sleep(0.02)

    def agent(self, node_id: str):
        return self.nodes[node_id].agent

    def close(self, kill_agents: bool = True) -> None:
        for dispatcher in self.dispatchers.values():
            dispatcher.close()
        if kill_agents:
            for node in self.nodes.values():
                try:
                    ray.kill(node.agent)
                except RayError:
                    pass
        self.dispatchers.clear()
        self.replica_hosts.clear()
        self.nodes.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["HamrAgent", "RayNode", "RayPool", "RaySession", "RayWorker", "node_name"]
