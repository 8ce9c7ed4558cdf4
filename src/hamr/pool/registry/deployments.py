"""Deployments (N replicas of an executable serving requests) and their replicas, one per (deployment, device).

A replica is pending when placed, ready once its node's agent has loaded it, and stopped or
failed after (both final). Placing, stopping and scaling lock the deployment's row, so two
reconcilers never overshoot its replica count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hamr.pool.registry.errors import InvalidTransition, NotFound, RegistryError
from hamr.pool.registry.models import (
    DEPLOYMENT_ACTIVE,
    DEPLOYMENT_DELETED,
    LIVE_REPLICA,
    REPLICA_FAILED,
    REPLICA_PENDING,
    REPLICA_READY,
    REPLICA_STOPPED,
    Deployment,
    Device,
    Node,
    Replica,
)
from hamr.pool.registry.scope import ANY_TENANT, Scope, require_tenant, scoped

MAX_REPLICAS = 1024
REPLICA_MOVES = {
    REPLICA_PENDING: {REPLICA_READY, REPLICA_STOPPED, REPLICA_FAILED},
    REPLICA_READY: {REPLICA_STOPPED, REPLICA_FAILED},
}


@dataclass(frozen=True)
class ReplicaView:
    """A replica with what its users need of its deployment and device."""

    id: int
    deployment_id: int
    tenant_id: int
    executable_id: int
    state: str
    reason: str
    device: str  # uuid
    local_id: str
    node: str
    kind: str
    architecture: str
    share: int


class Deployments:
    def create_deployment(
        self, tenant: int, executable_id: int, replicas: int, name: str = "", share: int = 500
    ) -> Deployment:
        owner = require_tenant(tenant)
        _check_counts(replicas, share)
        self._require_executable(owner, executable_id)  # another tenant's executable reads as missing
        with self.writing() as session:
            deployment = Deployment(
                tenant_id=owner,
                executable_id=executable_id,
                name=name,
                replicas=replicas,
                share=share,
                state=DEPLOYMENT_ACTIVE,
            )
            session.add(deployment)
            session.flush()
            self._event(
                session,
                "deployment.created",
                f"deployment:{deployment.id}",
                owner,
                executable=executable_id,
                replicas=replicas,
                share=share,
            )
        return deployment

    def get_deployment(self, tenant: Scope, deployment_id: int) -> Deployment | None:
        stmt = scoped(select(Deployment), Deployment.tenant_id, tenant).where(Deployment.id == deployment_id)
        return self._one(stmt.where(Deployment.state == DEPLOYMENT_ACTIVE))

    def list_deployments(self, tenant: Scope) -> list[Deployment]:
        stmt = scoped(select(Deployment), Deployment.tenant_id, tenant).where(Deployment.state == DEPLOYMENT_ACTIVE)
        return self._all(stmt.order_by(Deployment.id))

    def scale_deployment(self, tenant: Scope, deployment_id: int, replicas: int) -> Deployment:
        """Change how many replicas the pool keeps; the reconciler places or stops the difference."""
        with self.writing() as session:
            deployment = self._locked_deployment(session, tenant, deployment_id)
            _check_counts(replicas, deployment.share)
            old, deployment.replicas = deployment.replicas, replicas
            self._event(
                session,
                "deployment.scaled",
                f"deployment:{deployment.id}",
                deployment.tenant_id,
                previous=old,
                replicas=replicas,
            )
        return deployment

    def delete_deployment(self, tenant: Scope, deployment_id: int) -> Deployment:
        """The deployment stops serving; its replicas stop. The row stays, for the history."""
        with self.writing() as session:
            deployment = self._locked_deployment(session, tenant, deployment_id)
            deployment.state = DEPLOYMENT_DELETED
            session.execute(
                update(Replica)
                .where(Replica.deployment_id == deployment.id, Replica.state.in_(LIVE_REPLICA))
                .values(state=REPLICA_STOPPED, reason="the deployment was deleted")
            )
            self._event(session, "deployment.deleted", f"deployment:{deployment.id}", deployment.tenant_id)
        return deployment

    def list_replicas(
        self, tenant: Scope, deployment_id: int | None = None, node: str | None = None, live: bool = True
    ) -> list[ReplicaView]:
        """Replicas (live ones only unless `live=False`), of one deployment or of every deployment on one node."""
        stmt = (
            select(Replica, Deployment, Device.uuid, Device.local_id, Node.name, Device.kind, Device.architecture)
            .join(Deployment, Deployment.id == Replica.deployment_id)
            .join(Device, Device.id == Replica.device_id)
            .join(Node, Node.id == Device.node_id)
        )
        stmt = scoped(stmt, Deployment.tenant_id, tenant)
        if deployment_id is not None:
            stmt = stmt.where(Deployment.id == deployment_id)
        if node is not None:
            stmt = stmt.where(Node.name == node)
        if live:
            stmt = stmt.where(Replica.state.in_(LIVE_REPLICA), Deployment.state == DEPLOYMENT_ACTIVE)
        with self.reading() as session:
            rows = session.execute(stmt.order_by(Replica.id)).all()
        return [
            ReplicaView(
                r.id,
                d.id,
                d.tenant_id,
                d.executable_id,
                r.state,
                r.reason,
                uuid,
                local_id,
                node_name,
                kind,
                arch,
                d.share,
            )
            for r, d, uuid, local_id, node_name, kind, arch in rows
        ]

    def replica_shares(self) -> dict[str, int]:
        """device uuid -> thousandths of it reserved by live replicas."""
        stmt = (
            select(Device.uuid, func.sum(Deployment.share))
            .join(Replica, Replica.device_id == Device.id)
            .join(Deployment, Deployment.id == Replica.deployment_id)
            .where(Replica.state.in_(LIVE_REPLICA), Deployment.state == DEPLOYMENT_ACTIVE)
            .group_by(Device.uuid)
        )
        with self.reading() as session:
            return {uuid: int(total) for uuid, total in session.execute(stmt)}

    def add_replica(self, deployment_id: int, device_uuid: str, reason: str) -> Replica:
        """Place one more replica (pending) on a device; refused once the deployment has all it wants."""
        with self.writing() as session:
            deployment = self._locked_deployment(session, ANY_TENANT, deployment_id)
            live = session.scalar(
                select(func.count(Replica.id)).where(
                    Replica.deployment_id == deployment.id, Replica.state.in_(LIVE_REPLICA)
                )
            )
            if live >= deployment.replicas:
                raise RegistryError(f"deployment {deployment.id} already has {live} of {deployment.replicas} replicas")
            device = session.scalar(select(Device).where(Device.uuid == device_uuid))
            if device is None:
                raise NotFound(f"device {device_uuid} not found")
            replica = Replica(deployment_id=deployment.id, device_id=device.id, state=REPLICA_PENDING, reason=reason)
            session.add(replica)
            session.flush()
            self._event(
                session,
                "replica.placed",
                f"replica:{replica.id}",
                deployment.tenant_id,
                deployment=deployment.id,
                device=device_uuid,
                reason=reason,
            )
        return replica

    def set_replica_state(self, replica_id: int, state: str, reason: str = "") -> Replica:
        """pending -> ready | stopped | failed; ready -> stopped | failed. InvalidTransition otherwise."""
        with self.writing() as session:
            replica = session.get(Replica, replica_id, with_for_update=True)
            if replica is None:
                raise NotFound(f"replica {replica_id} not found")
            if state not in REPLICA_MOVES.get(replica.state, ()):
                raise InvalidTransition(f"replica {replica_id}: cannot go from {replica.state} to {state}")
            previous, replica.state = replica.state, state
            if reason:
                replica.reason = reason
            tenant = session.scalar(select(Deployment.tenant_id).where(Deployment.id == replica.deployment_id))
            self._event(session, f"replica.{state}", f"replica:{replica.id}", tenant, previous=previous, reason=reason)
        return replica

    def add_busy_seconds(self, seconds: Mapping[str, float]) -> None:
        """Add to each device's busy time (device uuid -> seconds), in one transaction."""
        if not seconds:
            return
        with self.writing() as session:
            for uuid, value in sorted(seconds.items()):
                session.execute(
                    update(Device).where(Device.uuid == uuid).values(busy_seconds=Device.busy_seconds + value)
                )

    @staticmethod
    def _locked_deployment(session: Session, tenant: Scope, deployment_id: int) -> Deployment:
        stmt = scoped(select(Deployment), Deployment.tenant_id, tenant).where(Deployment.id == deployment_id)
        deployment = session.scalar(stmt.where(Deployment.state == DEPLOYMENT_ACTIVE).with_for_update())
        if deployment is None:
            raise NotFound(f"deployment {deployment_id} not found")
        return deployment


def _check_counts(replicas: int, share: int) -> None:
    if not 0 <= replicas <= MAX_REPLICAS:
        raise RegistryError(f"replicas must be 0 to {MAX_REPLICAS}, got {replicas}")
    if not 1 <= share <= 1000:
        raise RegistryError(f"share is thousandths of a device, 1 to 1000, got {share}")
