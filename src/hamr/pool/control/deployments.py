"""The deployment reconciler: keeps each deployment at its replica count, on devices that can take work.

`reconcile(registry)` is one pass, run by the pool's loop (`hamr pool up`) next to the
dispatchers:
1. A live replica whose device is drained, unhealthy or missing, or whose node is lost or
   hosts no replicas, is stopped (`migrating off DEVICE: why`).
2. A deployment with more live replicas than it wants stops the newest (pending first).
3. A deployment with fewer gets new ones, placed by `scheduler.replicas.place_replicas`
   (spread across kinds, variants, architectures, devices, nodes; then, for a share of a device,
   FGD's least growth in fragmentation), possibly of another architecture than the ones it replaces. The node's `ReplicaHost` loads them.
Requests keep going to the replicas still ready while the new ones load, so a drain loses none.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from hamr.pool.registry import ANY_TENANT, InvalidTransition, NotFound, Registry, RegistryError
from hamr.pool.registry.fleet import USABLE_HEALTH
from hamr.pool.registry.models import NODE_UP, REPLICA_PENDING, REPLICA_STOPPED
from hamr.pool.scheduler.replicas import Candidate, place_replicas

HOSTS_REPLICAS = "hosts_replicas"  # node label set by agents that run a ReplicaHost


class Reconciler:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.waiting: dict[int, str] = {}  # deployment -> why it has fewer replicas than it wants
        self._executables: dict[int, tuple[str, ...]] = {}

    def step(self) -> int:
        deployments = self.registry.list_deployments(ANY_TENANT)
        if not deployments:
            return 0
        nodes = {n.id: n for n in self.registry.list_nodes()}
        devices = {d.uuid: d for d in self.registry.list_devices()}
        why_not = {uuid: self._unusable(d, nodes[d.node_id]) for uuid, d in devices.items()}
        live = defaultdict(list)
        changed = 0
        for replica in self.registry.list_replicas(ANY_TENANT):
            why = why_not.get(replica.device, "device gone")
            if why:
                changed += self._stop(replica.id, f"migrating off {replica.local_id} on {replica.node}: {why}")
            else:
                live[replica.deployment_id].append(replica)
        for deployment in deployments:
            extra = len(live[deployment.id]) - deployment.replicas
            if extra > 0:
                newest = sorted(live[deployment.id], key=lambda r: (r.state != REPLICA_PENDING, -r.id))[:extra]
                for replica in newest:
                    changed += self._stop(replica.id, f"scaled down to {deployment.replicas}")
                    live[deployment.id].remove(replica)
        reserved = None  # device -> share held by live replicas, read once some deployment needs more
        shares = Counter()  # the shares deployments ask for: FGD's typical pods
        for deployment in deployments:
            shares[deployment.share] += deployment.replicas
        for deployment in deployments:
            missing = deployment.replicas - len(live[deployment.id])
            if missing <= 0:
                self._waits(deployment, "")
                continue
            reserved = reserved if reserved is not None else self.registry.replica_shares()
            candidates = [
                Candidate(
                    d.uuid,
                    d.local_id,
                    nodes[d.node_id].name,
                    d.kind,
                    d.architecture,
                    tuple(d.targets),
                    reserved.get(d.uuid, 0),
                )
                for d in devices.values()
                if not why_not[d.uuid]
            ]
            by_uuid = {c.uuid: c for c in candidates}
            existing = [by_uuid[r.device] for r in live[deployment.id] if r.device in by_uuid]
            targets = self._targets(deployment.executable_id)
            placed, short = place_replicas(candidates, existing, missing, targets, deployment.share, shares)
            for placement in placed:
                try:
                    self.registry.add_replica(deployment.id, placement.device, placement.reason)
                    reserved[placement.device] = reserved.get(placement.device, 0) + deployment.share
                    changed += 1
                except RegistryError as exc:  # deleted or scaled meanwhile
                    short = f"waiting: {exc}"
            self._waits(deployment, short)
        return changed

    @staticmethod
    def _unusable(device, node) -> str:
        """Why a device cannot hold a replica ('' when it can)."""
        if node.state != NODE_UP:
            return f"node {node.name} is {node.state}"
        if not node.labels.get(HOSTS_REPLICAS):
            return f"node {node.name} hosts no replicas"
        if device.drained:
            return "drained"
        if device.health not in USABLE_HEALTH:
            return f"health {device.health}"
        return ""

    def _targets(self, executable_id: int) -> tuple[str, ...]:
        targets = self._executables.get(executable_id)
        if targets is None:
            record = self.registry.get_executable(ANY_TENANT, executable_id)
            targets = self._executables[executable_id] = tuple(record.targets) if record else ()
        return targets

    def _stop(self, replica_id: int, reason: str) -> int:
        try:
            self.registry.set_replica_state(replica_id, REPLICA_STOPPED, reason)
            return 1
        except (InvalidTransition, NotFound):
            return 0

    def _waits(self, deployment, reason: str) -> None:
        if self.waiting.get(deployment.id, "") != reason:
            self.waiting[deployment.id] = reason
            if reason:
                self.registry.record_event(
                    "deployment.waiting", f"deployment:{deployment.id}", deployment.tenant_id, {"reason": reason}
                )
        if not reason:
            self.waiting.pop(deployment.id, None)


__all__ = ["HOSTS_REPLICAS", "Reconciler"]
