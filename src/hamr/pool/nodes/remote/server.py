"""Remote nodes, the server's side (in `hamr pool up`): one Dispatcher per `hamr agent`'s node, over HTTP.

    remote = RemoteNodes(registry, policy, heartbeat_timeout_s=15)
    app = create_app(registry, remote=remote)   # the /v1/agents routes call heartbeat_from, take_work, deliver
    remote.step()                                # in the pool loop, next to the local Dispatcher

`RemoteNodes` is a NodeGroup, `RemoteNode` an Executor and `RemoteWorker` a DeviceWorker
(hamr/pool/contracts.py). The agent's side is agent.py, agent_link.py and agent_replicas.py.

An agent heartbeats `POST /v1/agents/{node}/heartbeat` with its devices; the first one gives
its node a `Dispatcher` whose executor is that node's `RemoteNode` (as nodes.ray.cluster.RayNode is
for a Ray node). The Dispatcher is unchanged: it places, records `schedule_job(start=True)`,
and records each result once per (job, attempt). A `RemoteWorker.submit` puts a work item in
its node's outbox, which the agent long-polls (`take_work`); the agent posts the result
(`deliver`) and `RemoteWorker.result` writes its outputs as .npy into the run directory, as
hamr/pool/nodes/local/worker.py does, so the Dispatcher reads them unchanged.

Gang jobs: a node runs them only when its agent's heartbeat carries the label `gangs` (RUNS_GANGS),
so an older agent never gets a shard it would run as the whole batch. Each shard is its own work
item, keyed (job, attempt, shard): the agent downloads the job's inputs and runs
`gangs.split_inputs(inputs, shards)[shard]`, the split the Dispatcher joins back.

Deployment replicas placed on the node are loaded and run in the agent's own process
(hamr/pool/nodes/remote/server_replicas.py): its Dispatcher serves replicas, with `open_replica` as opener.

Failure: a node whose heartbeats stop is marked lost (`heartbeat()`, `mark_lost_nodes`); its
workers are then not alive and their replies are `WorkerDied`, so the Dispatcher requeues
their jobs and they run on other nodes. So is a run the agent no longer holds: its heartbeat
lists what it holds (`running`), and work delivered more than `LOST_WORK_GRACE_S` ago that the
list leaves out (the agent restarted, or the reply carrying it was lost) is dead too.
docs/pool.md ("Remote agents").
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hamr.errors import HamrError
from hamr.ir.signature import Signature
from hamr.pool.dispatch.dispatcher import Dispatcher
from hamr.pool.dispatch.replicas import ReplicaHost
from hamr.pool.drivers import DeviceReport
from hamr.pool.nodes.local.workers import WorkerDied
from hamr.pool.nodes.remote.names import RUNS_GANGS, check_node_name
from hamr.pool.nodes.remote.output_check import outputs_mismatch, signature_of_file
from hamr.pool.nodes.remote.server_replicas import RemoteSession, ReplicaRequest, ReplicaRequests, open_replica
from hamr.pool.registry import ANY_TENANT, Node, NotFound, Registry, ReplicaView
from hamr.pool.registry.models import NODE_LOST, NODE_UP
from hamr.pool.sessions import job_done, job_failed

LOST_WORK_GRACE_S = 10.0
POLL_SLICE_S = 0.5  # how often a long poll looks whether its agent hung up


class AgentConflict(HamrError):
    """A heartbeat the pool refuses: the node name or a device is another node's."""


@dataclass
class Assignment:
    """One (job, attempt, shard) sent to a node: the work item the agent takes, and what it posted back."""

    item: dict
    request: dict  # the Dispatcher's request (its "outputs" is where the outputs go)
    delivered_at: float | None = None  # when the agent took it (monotonic)
    reply: dict | None = None
    died: str = ""

    @property
    def key(self) -> tuple[int, int, int]:
        return self.item["job"], self.item["attempt"], self.item["shard"]

    def took(self, now: float) -> None:
        self.delivered_at = now


class RemoteWorker:
    """A device's worker on a remote node, as the Dispatcher sees it (WorkerProcess's interface)."""

    def __init__(self, node: RemoteNode, local_id: str):
        self.node, self.device = node, local_id
        self.generation = node.generation
        self.assignment: Assignment | None = None

    def alive(self) -> bool:
        return not self.node.lost and self.node.generation == self.generation

    def has_reply(self) -> bool:
        """A result or a death to read: the agent posted one, or the node is lost."""
        a = self.assignment
        return a is not None and (a.reply is not None or bool(a.died) or not self.alive())

    def submit(self, request: dict) -> None:
        if not self.alive():
            raise WorkerDied(f"the agent of node {self.node.name} is gone: {self.node.lost or 'it reconnected'}")
        assignment = Assignment(self.node.group.work_item(request, self.device), request)
        self.node.assign(assignment)
        self.assignment = assignment

    def result(self, timeout: float | None = None) -> dict:
        if self.assignment is None:
            raise WorkerDied(f"worker for {self.device} on {self.node.name} has no job")
        with self.node.changed:
            if not self.node.changed.wait_for(self.has_reply, timeout):
                raise TimeoutError(f"worker for {self.device} on {self.node.name} gave no reply within {timeout} s")
            assignment, self.assignment = self.assignment, None
            self.node.runs.pop(assignment.key, None)
        if assignment.reply is None:
            raise WorkerDied(
                assignment.died or f"node {self.node.name} is lost: {self.node.lost or 'its agent reconnected'}"
            )
        return self._written(assignment)

    def _written(self, assignment: Assignment) -> dict:
        """The reply as a worker process gives it: outputs as .npy in OUTPUTS/attempt-N (hamr/pool/sessions.py)."""
        job, attempt, shard = assignment.key
        reply = assignment.reply
        if not reply["ok"]:
            return job_failed(job, attempt, reply.get("error") or "the agent gave no error", shard=shard)
        return job_done(
            job,
            attempt,
            assignment.request["outputs"],
            reply["outputs"],
            reply["latency_s"],
            reply.get("device"),
            reply.get("target"),
            shard=shard,
        )

    def kill(self) -> None:
        """Stop waiting for this attempt (stale, or its node gone); a late result for it is refused (409)."""
        if self.assignment is not None:
            self.node.withdraw(self.assignment)
            self.assignment = None

    close = kill


class RemoteNode:
    """One agent's node: the executor of its Dispatcher, and the outbox its agent long-polls."""

    def __init__(self, group: RemoteNodes, name: str):
        self.group, self.name = group, name  # group: the RemoteNodes it is one of
        self.changed = group.changed  # a result posted, or the node lost (one for all nodes)
        self.outbox: list[Assignment | ReplicaRequest] = []  # not taken by the agent yet
        self.requests = ReplicaRequests(self)  # deployment replicas' loads and inferences, waiting for answers
        self.runs: dict[tuple[int, int, int], Assignment] = {}  # (job, attempt, shard) -> sent, no result read yet
        self.labels: dict = {}  # of its agent's latest heartbeat
        self.lost = ""  # why, while the node is lost
        self.generation = 0  # a lost node's workers stay dead after it comes back
        self.closed = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._waiters_lock = threading.Lock()
        self._polls = 0  # long polls open now
        self._last_poll = time.monotonic()

    # -- the Dispatcher's side (the agent loop's thread) --

    @property
    def gangs(self) -> bool:
        """The agent runs gang shards: it said so in its latest heartbeat (the Dispatcher's executor flag)."""
        return self.labels.get(RUNS_GANGS) is True

    def start(self, local_id: str, env: dict | None, staging=None, protect=None) -> RemoteWorker:
        # staging, protect: a local worker's sandbox; this node's jobs run elsewhere (docs/pool.md)
        if self.lost:
            raise WorkerDied(f"node {self.name} is lost: {self.lost}")
        return RemoteWorker(self, local_id)

    def node_labels(self) -> dict:
        return dict(self.labels)  # its agent's latest heartbeat says how its workers are contained

    def ready(self, workers: dict[str, RemoteWorker], wait: float) -> list[str]:
        with self.changed:
            self.changed.wait_for(lambda: any(w.has_reply() for w in workers.values()), wait)
            return [device for device, w in workers.items() if w.has_reply()]

    def assign(self, assignment: Assignment) -> None:
        with self.changed:
            self.runs[assignment.key] = assignment
            self.outbox.append(assignment)
        self._wake_takers()

    def withdraw(self, assignment: Assignment) -> None:
        with self.changed:
            self.runs.pop(assignment.key, None)
            if assignment in self.outbox:
                self.outbox.remove(assignment)

    # -- its ReplicaHost's side (a loader thread, the infer route's threads) --

    def sent(self, job: int | None = None, executable: int | None = None) -> bool:
        """Work now sent to this node runs the job, or the executable (a job's, or a replica's it loads or runs):
        what the node's agent token may download."""
        with self.changed:
            items = [a.item for a in self.runs.values()]
        items += [r.item for r in self.requests.pending()]
        return any(
            (job is not None and item.get("job") == job)
            or (executable is not None and item.get("executable_id") == executable)
            for item in items
        )

    def open_replica(self, replica: ReplicaView) -> RemoteSession:
        return open_replica(self, replica)

    def send(self, request: ReplicaRequest) -> None:
        with self.changed:
            self.outbox.append(request)
        self._wake_takers()

    def unsend(self, request: ReplicaRequest) -> None:
        with self.changed:
            if request in self.outbox:
                self.outbox.remove(request)

    def silent_s(self) -> float:
        """Seconds since the agent last had a long poll open (0 while it has one)."""
        return 0.0 if self._polls else time.monotonic() - self._last_poll

    # -- the agent's side (the HTTP routes' threads and event loop) --

    def take(self) -> list[dict]:
        items = []
        with self.changed:
            taken, self.outbox = self.outbox, []
            now = time.monotonic()
            for assignment in taken:
                assignment.took(now)
                if isinstance(assignment, Assignment) and assignment.item["shards"] > 1 and not self.gangs:
                    # its agent restarted as one that would run the whole batch: the attempt is requeued
                    assignment.died = f"the agent of {self.name} no longer runs gang jobs (no '{RUNS_GANGS}' label)"
                    self.changed.notify_all()
                else:
                    items.append(assignment.item)
        return items

    async def take_work(self, wait: float, gone: Callable[[], Awaitable[bool]] | None = None) -> list[dict]:
        """The work waiting for this node; if none, wait up to `wait` s for some (a long poll).
        `gone` says the agent hung up: a dead agent's poll does not hold up the server's shutdown."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        waiter = (loop, event)
        with self._waiters_lock:
            self._waiters.add(waiter)
            self._polls += 1
        try:
            deadline = time.monotonic() + wait
            while True:
                event.clear()
                items = self.take()
                left = deadline - time.monotonic()
                if items or left <= 0 or self.closed:
                    return items
                try:
                    await asyncio.wait_for(event.wait(), min(left, POLL_SLICE_S))
                except TimeoutError:
                    if gone is not None and await gone():
                        return []
        finally:
            with self._waiters_lock:
                self._waiters.discard(waiter)
                self._polls -= 1
                self._last_poll = time.monotonic()

    def _wake_takers(self) -> None:
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def deliver(self, job: int, attempt: int, reply: dict, shard: int = 0) -> str | None:
        """The agent's result for (job, attempt, shard): the local id of the device it ran on, or None when no
        run of it waits here (stale, requeued, cancelled, already posted, or the pool restarted)."""
        with self.changed:
            assignment = self.runs.get((job, attempt, shard))
            if assignment is None or assignment.reply is not None or assignment.died:
                return None
            if reply.get("died"):
                assignment.died = f"the worker for {assignment.item['device']} on {self.name} died: {reply['died']}"
            else:
                assignment.reply = reply
            self.changed.notify_all()
        return assignment.item["device"]

    def held_by_agent(self, running: set[tuple[int, int, int]]) -> None:
        """Work the agent took more than LOST_WORK_GRACE_S ago but no longer lists (job, attempt, shard) is dead."""
        cutoff = time.monotonic() - LOST_WORK_GRACE_S
        with self.changed:
            for key, assignment in self.runs.items():
                late = assignment.delivered_at is not None and assignment.delivered_at < cutoff
                if late and key not in running and assignment.reply is None and not assignment.died:
                    held = f"job {key[0]} attempt {key[1]}" + (
                        f" shard {key[2]}" if assignment.item["shards"] > 1 else ""
                    )
                    assignment.died = (
                        f"the agent of {self.name} does not hold {held} (it restarted, or the work was lost on the way)"
                    )
                    self.changed.notify_all()

    def lose(self, why: str) -> None:
        with self.changed:
            if not self.lost:
                self.lost = why
                self.generation += 1
                self.outbox.clear()
                self.changed.notify_all()
        self.requests.abandon_all(f"the agent of node {self.name} is gone: {why}")

    def recover(self) -> None:
        with self.changed:
            self.lost = ""


class RemoteNodes:
    """The `hamr pool up` process's side of every remote agent: a RemoteNode and a Dispatcher per node."""

    def __init__(
        self,
        registry: Registry,
        policy: str = "max_throughput",
        heartbeat_timeout_s: float = 15.0,
        reserved: set[str] | frozenset[str] = frozenset(),
    ):
        self.registry, self.policy, self.heartbeat_timeout_s = registry, policy, heartbeat_timeout_s
        self.reserved = set(reserved)  # node names the pool itself runs (its local node)
        self.nodes: dict[str, RemoteNode] = {}
        self.dispatchers: dict[str, Dispatcher] = {}
        self.replica_hosts: list[ReplicaHost] = []  # one per node, for the service (kept as one list object)
        self.lock = threading.Lock()
        self.changed = threading.Condition()
        self._executables: dict[int, str] = {}  # executable id -> sha256 (records never change)
        self._signatures: dict[int, Signature] = {}  # executable id -> its model's signature

    # -- the routes' side --

    def heartbeat_from(
        self,
        name: str,
        reports: list[DeviceReport],
        address: str | None = None,
        labels: dict | None = None,
        running: set[tuple[int, int, int]] | None = None,
    ) -> Node:
        """An agent's heartbeat: registers or refreshes its node; the first one gives the node a Dispatcher."""
        check_node_name(name)
        if name in self.reserved:
            raise AgentConflict(f"node name '{name}' is the pool server's own node: start the agent with --name")
        self._check_devices_are_its_own(name, reports)
        with self.lock:
            remote = self.nodes.get(name)
            if remote is None:
                remote = self.nodes[name] = RemoteNode(self, name)
                remote.labels = dict(labels or {})  # the Dispatcher's first heartbeat writes them already
                dispatcher = Dispatcher(
                    self.registry,
                    name,
                    policy=self.policy,
                    reports=reports,
                    executor=remote,
                    address=address,
                    serve_replicas=True,
                    open_replica=remote.open_replica,
                )
                self.dispatchers[name] = dispatcher
                self.replica_hosts.append(dispatcher.replicas)
            node = self.registry.heartbeat(name, reports, address=address, labels=labels)  # after: the agent's labels
            remote.labels = dict(labels or {})
            remote.recover()
        if running is not None:
            remote.held_by_agent(running)
        return node

    def _check_devices_are_its_own(self, name: str, reports: list[DeviceReport]) -> None:
        reported = {r.uuid for r in reports}
        nodes = {n.id: n for n in self.registry.list_nodes()}
        for device in self.registry.list_devices():
            owner = nodes.get(device.node_id)
            if device.uuid in reported and owner is not None and owner.name != name and owner.state == NODE_UP:
                raise AgentConflict(
                    f"device {device.uuid} ({device.local_id}) is already reported by node {owner.name}, which is up: "
                    "two hosts give one device id (set HAMR_HOST_ID to tell them apart)"
                )

    def node(self, name: str) -> RemoteNode:
        remote = self.nodes.get(name)
        if remote is None:
            raise NotFound(f"node {name} has no agent here: POST /v1/agents/{name}/heartbeat first")
        return remote

    def work_item(self, request: dict, local_id: str) -> dict:
        """What the agent needs to run a Dispatcher's request: ids and hashes to download, not paths. A gang
        shard names its shard and the gang's size: the agent downloads the whole inputs and splits them."""
        job = self.registry.get_job(ANY_TENANT, int(request["job"]))
        if job is None:
            raise WorkerDied(f"job {request['job']} is gone")
        return {
            "kind": "job",
            "job": job.id,
            "tenant": job.tenant_id,
            "attempt": int(request["attempt"]),
            "shard": int(request.get("shard", 0)),
            "shards": int(request.get("shards", 1)),
            "device": local_id,
            "executable_id": job.executable_id,
            "executable_sha256": self.executable_sha256(job.executable_id),
            "inputs": dict(job.inputs),
        }

    def executable_sha256(self, executable_id: int) -> str:
        sha256 = self._executables.get(executable_id)
        if sha256 is None:
            sha256 = self._executables[executable_id] = self.registry.get_executable(ANY_TENANT, executable_id).sha256
        return sha256

    def signature(self, executable_id: int) -> Signature:
        signature = self._signatures.get(executable_id)
        if signature is None:
            path = self.registry.executable_file(ANY_TENANT, executable_id)
            signature = self._signatures[executable_id] = signature_of_file(path)
        return signature

    def result_mismatch(self, name: str, job: int, attempt: int, shard: int, outputs: dict) -> str | None:
        """Why an agent's outputs for (job, attempt, shard) are not what the job's model gives (None: they are,
        or no run of it waits on the node, which `deliver` then says)."""
        with self.changed:
            assignment = self.node(name).runs.get((job, attempt, shard))
        if assignment is None:
            return None
        why = outputs_mismatch(self.signature(assignment.item["executable_id"]), outputs)
        return None if why is None else f"the agent of {name} sent outputs the model does not give: {why}"

    def answer_mismatch(self, request: ReplicaRequest, outputs: dict) -> str | None:
        """Why an agent's outputs for a replica's request are not what the deployment's model gives, or None."""
        why = outputs_mismatch(self.signature(request.item["executable_id"]), outputs)
        return None if why is None else f"the agent sent outputs the model does not give: {why}"

    # -- the pool loop's side (contracts.NodeGroup, as RayPool) --

    def heartbeat(self) -> None:
        """Mark nodes whose agents stopped heartbeating lost: their runs die and are requeued."""
        self.registry.mark_lost_nodes(self.heartbeat_timeout_s)
        for name, remote in list(self.nodes.items()):
            node = self.registry.get_node(name)
            if node is None or node.state == NODE_LOST:
                remote.lose(f"no heartbeat from its agent for more than {self.heartbeat_timeout_s:g} s")

    def step(self) -> int:
        with self.lock:
            active = [(self.nodes[n], d) for n, d in self.dispatchers.items()]
        return sum(d.step() for remote, d in active if not remote.lost or d.busy())

    def busy(self) -> bool:
        return any(d.busy() for d in list(self.dispatchers.values()))

    def loading(self) -> bool:
        return False  # its replicas load in the agents; the loop does not wait on them

    def refresh(self) -> list[str]:
        """Remote nodes join by heartbeating (`heartbeat_from`), not here."""
        return []

    def wait_for_replies(self, timeout: float) -> None:
        """Return when an agent posted a result (or a node with runs is lost), or after `timeout` s."""

        def ready() -> bool:
            return any(
                a.reply is not None or a.died or node.lost
                for node in list(self.nodes.values())
                for a in node.runs.values()
            )

        with self.changed:
            self.changed.wait_for(ready, timeout)

    def close(self) -> None:
        with self.lock:
            for remote in self.nodes.values():
                remote.closed = True
                remote._wake_takers()
            for dispatcher in self.dispatchers.values():
                dispatcher.close()
            self.dispatchers.clear()
            self.replica_hosts.clear()
            self.nodes.clear()


__all__ = ["AgentConflict", "RemoteNode", "RemoteNodes", "RemoteWorker", "check_node_name"]
