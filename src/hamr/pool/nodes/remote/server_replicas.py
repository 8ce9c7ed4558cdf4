"""Deployment replicas on a remote agent's node: loaded and run in the `hamr agent` process, over HTTP.

The node's Dispatcher hosts them with a ReplicaHost whose `opener` is `RemoteNode.open_replica`
(as nodes.ray.cluster.RayNode's is for a Ray node). Each thing asked of the agent is a `ReplicaRequest`
with an id, put in the node's outbox as a work item:

- "load" (replica id, device local id, executable id and sha256): the agent loads and warms a
  Session and answers `{"target"}` or `{"error"}` (JSON) to `POST /v1/agents/{node}/requests/{id}`;
- "infer": the agent fetches the inputs (`GET /v1/agents/{node}/requests/{id}`, raw tensors),
  runs, and posts the outputs (raw tensors) or `{"error"}`.

Every wait is bounded. A request the agent does not answer in time, or whose node is lost or
whose agent stopped polling, raises ReplicaGone: the request goes to another replica.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Protocol

from hamr.errors import HamrError
from hamr.pool.dispatch.replicas import ReplicaGone
from hamr.pool.registry import ReplicaView
from hamr.pool.wire import tensors

LOAD_TIMEOUT_S = 120.0
INFER_TIMEOUT_S = 120.0
SILENT_AGENT_S = 2.0  # an agent with no long poll open for this long is taken for gone
WAIT_SLICE_S = 0.25

_request_ids = itertools.count(1)


class RemoteNode(Protocol):
    """What replica requests use of their node (server.RemoteNode; a protocol, so neither module imports the other)."""

    name: str
    lost: str
    generation: int
    requests: ReplicaRequests
    group: object  # its RemoteNodes: executable_sha256(executable id)

    def send(self, request: ReplicaRequest) -> None: ...

    def unsend(self, request: ReplicaRequest) -> None: ...

    def silent_s(self) -> float: ...


class ReplicaRequest:
    """One load or infer asked of a node's agent, and its answer."""

    def __init__(self, item: dict, inputs: bytes = b""):
        self.id = item["request"]
        self.item, self.inputs = item, inputs  # inputs: an infer's feeds, encoded as raw tensors
        self.delivered_at: float | None = None
        self.outputs: dict | None = None
        self.target = ""
        self.error = ""
        self.gone = ""
        self.settled = threading.Condition()

    @property
    def kind(self) -> str:
        return self.item["kind"]

    def took(self, now: float) -> None:
        with self.settled:
            self.delivered_at = now

    def answer(self, outputs: dict | None = None, target: str = "", error: str = "") -> None:
        with self.settled:
            self.outputs, self.target, self.error = outputs, target, error
            self.settled.notify_all()

    def abandon(self, why: str) -> None:
        with self.settled:
            self.gone = why
            self.settled.notify_all()

    def done(self) -> bool:
        return bool(self.outputs is not None or self.target or self.error or self.gone)


class ReplicaRequests:
    """A node's replica requests waiting for their answers (the RemoteNode's `requests`)."""

    def __init__(self, node: RemoteNode):
        self.node = node
        self.waiting: dict[int, ReplicaRequest] = {}
        self._lock = threading.Lock()

    def ask(self, item: dict, timeout: float, inputs: bytes = b"") -> ReplicaRequest:
        """Send `item` to the agent and wait for its answer; ReplicaGone when none comes."""
        request = ReplicaRequest({**item, "request": next(_request_ids)}, inputs)
        with self._lock:
            self.waiting[request.id] = request
        try:
            self.node.send(request)
            self._wait(request, timeout)
        finally:
            with self._lock:
                self.waiting.pop(request.id, None)
            self.node.unsend(request)
        if request.gone:
            raise ReplicaGone(request.gone)
        return request

    def _wait(self, request: ReplicaRequest, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with request.settled:
            while not request.done():
                silent = self.node.silent_s()
                if self.node.lost or silent > SILENT_AGENT_S:
                    why = self.node.lost or f"it has not polled for {silent:.1f} s"
                    request.gone = f"the agent of node {self.node.name} is gone: {why}"
                elif time.monotonic() > deadline:
                    request.gone = f"the agent of node {self.node.name} did not answer {request.kind} {request.id} within {timeout:g} s"
                else:
                    request.settled.wait(WAIT_SLICE_S)

    def pending(self) -> list[ReplicaRequest]:
        with self._lock:
            return list(self.waiting.values())

    def get(self, request_id: int) -> ReplicaRequest | None:
        with self._lock:
            return self.waiting.get(request_id)

    def abandon_all(self, why: str) -> None:
        with self._lock:
            waiting = list(self.waiting.values())
        for request in waiting:
            request.abandon(why)


class RemoteSession:
    """A replica's Session in a remote agent, as a ReplicaHost uses one (run, target, close)."""

    def __init__(self, node: RemoteNode, item: dict, target: str):
        self.node, self.item, self.target = node, item, target
        self.generation = node.generation

    def run(self, feeds: dict) -> dict:
        if self.node.lost or self.node.generation != self.generation:
            raise ReplicaGone(f"the agent of node {self.node.name} is gone: {self.node.lost or 'it reconnected'}")
        answer = self.node.requests.ask({**self.item, "kind": "infer"}, INFER_TIMEOUT_S, tensors.encode(feeds))
        if answer.error:
            raise HamrError(answer.error)
        return answer.outputs

    def close(self) -> None:
        pass  # the agent keeps the session for other replicas of the same executable on the device


def open_replica(node: RemoteNode, replica: ReplicaView) -> RemoteSession:
    """Load and warm a replica in the node's agent (the ReplicaHost's `opener`)."""
    if node.lost:
        raise ReplicaGone(f"the agent of node {node.name} is gone: {node.lost}")
    item = {
        "replica": replica.id,
        "device": replica.local_id,
        "executable_id": replica.executable_id,
        "executable_sha256": node.group.executable_sha256(replica.executable_id),
    }
    answer = node.requests.ask({**item, "kind": "load"}, LOAD_TIMEOUT_S)
    if answer.error:
        raise HamrError(answer.error)
    return RemoteSession(node, item, answer.target)


__all__ = ["RemoteSession", "ReplicaRequest", "ReplicaRequests", "open_replica"]
