"""Nodes and their devices: heartbeats from node agents, lost nodes, draining."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hamr.pool.drivers.base import DEGRADED, HEALTHY, DeviceReport
from hamr.pool.registry.errors import NotFound, RegistryError
from hamr.pool.registry.models import MISSING, NODE_LOST, NODE_UP, Device, Job, Node, Placement, utcnow
from hamr.pool.registry.states import ACTIVE

USABLE_HEALTH = (HEALTHY, DEGRADED)
REPORTED_FIELDS = (
    "driver",
    "vendor",
    "kind",
    "architecture",
    "memory_total",
    "memory_free",
    "compute_units",
    "health",
    "local_id",
)


def active_placements():
    """(device uuid, job id) for every device held by a scheduled or running job's current attempt."""
    return (
        select(Device.uuid, Job.id)
        .join(Placement, Placement.device_id == Device.id)
        .join(Job, Job.id == Placement.job_id)
        .where(Job.state.in_(ACTIVE), Placement.attempt == Job.attempts)
    )


class Fleet:
    def heartbeat(
        self,
        node: str,
        reports: Iterable[DeviceReport],
        address: str | None = None,
        labels: dict | None = None,
        now: datetime | None = None,
    ) -> Node:
        """A node agent's report: registers or refreshes the node and every device it reports.

        Devices of this node that the report leaves out get health 'missing'.
        """
        reports = list(reports)
        uuids = [r.uuid for r in reports]
        if len(set(uuids)) != len(uuids):
            raise RegistryError(f"node {node}: the heartbeat reports one device uuid twice")
        for attempt in range(3):  # a concurrent first heartbeat of the same node or device wins the insert
            try:
                with self.writing() as session:
                    return self._heartbeat(session, node, reports, address, labels, now or utcnow())
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _heartbeat(self, session: Session, name, reports, address, labels, now) -> Node:
        node = session.scalar(select(Node).where(Node.name == name).with_for_update())
        if node is None:
            node = Node(name=name, address=address or "", labels=dict(labels or {}), state=NODE_UP, last_heartbeat=now)
            session.add(node)
            session.flush()
            self._event(session, "node.registered", f"node:{name}", address=node.address)
        elif node.state == NODE_LOST:
            self._event(session, "node.recovered", f"node:{name}")
        node.state, node.last_heartbeat = NODE_UP, now
        if address is not None:
            node.address = address
        if labels is not None:
            node.labels = dict(labels)
        reported = {r.uuid for r in reports}
        known = {
            d.uuid: d
            for d in session.scalars(
                select(Device).where(or_(Device.uuid.in_(reported), Device.node_id == node.id)).with_for_update()
            )
        }
        for report in reports:
            device = known.get(report.uuid)
            if device is None:
                device = Device(uuid=report.uuid, node_id=node.id, drained=False)
                session.add(device)
                self._event(session, "device.registered", f"device:{report.uuid}", node=name, driver=report.driver)
            elif device.node_id != node.id:
                self._event(session, "device.moved", f"device:{report.uuid}", node=name)
            device.node_id = node.id
            for field in REPORTED_FIELDS:
                setattr(device, field, getattr(report, field))
            device.targets, device.details, device.last_seen = list(report.targets), dict(report.details), now
        for device in known.values():
            if device.node_id == node.id and device.uuid not in reported and device.health != MISSING:
                device.health = MISSING
                self._event(session, "device.missing", f"device:{device.uuid}", node=name)
        return node

    def mark_lost_nodes(self, timeout_s: float, now: datetime | None = None) -> list[Node]:
        """Nodes whose last heartbeat is older than `timeout_s` become 'lost'; returns them."""
        cutoff = (now or utcnow()) - timedelta(seconds=timeout_s)
        with self.writing() as session:
            stmt = select(Node).where(Node.state == NODE_UP, Node.last_heartbeat < cutoff).with_for_update()
            lost = list(session.scalars(stmt))
            for node in lost:
                node.state = NODE_LOST
                self._event(session, "node.lost", f"node:{node.name}", last_heartbeat=node.last_heartbeat.isoformat())
        return lost

    def get_node(self, name: str) -> Node | None:
        return self._one(select(Node).where(Node.name == name))

    def list_nodes(self) -> list[Node]:
        return self._all(select(Node).order_by(Node.name))

    def get_device(self, uuid: str) -> Device | None:
        return self._one(select(Device).where(Device.uuid == uuid))

    def list_devices(self, node: str | None = None, schedulable: bool = False) -> list[Device]:
        """All devices, or a node's; `schedulable`: not drained, healthy or degraded, on a node that is up."""
        stmt = select(Device).join(Node, Device.node_id == Node.id)
        if node is not None:
            stmt = stmt.where(Node.name == node)
        if schedulable:
            stmt = stmt.where(Device.drained.is_(False), Device.health.in_(USABLE_HEALTH), Node.state == NODE_UP)
        return self._all(stmt.order_by(Device.id))

    def set_drained(self, uuid: str, drained: bool = True) -> Device:
        """A drained device takes no new placements; what runs there keeps running until requeued."""
        with self.writing() as session:
            device = session.scalar(select(Device).where(Device.uuid == uuid).with_for_update())
            if device is None:
                raise NotFound(f"device {uuid} not found")
            if device.drained != drained:
                device.drained = drained
                self._event(session, "device.drained" if drained else "device.undrained", f"device:{uuid}")
        return device

    def drain_node(self, name: str, drained: bool = True) -> list[Device]:
        node = self.get_node(name)
        if node is None:
            raise NotFound(f"node {name} not found")
        return [self.set_drained(d.uuid, drained) for d in self.list_devices(node=name)]

    def busy_devices(self) -> dict[str, int]:
        """device uuid -> id of the job (scheduled or running) placed on it in its current attempt."""
        with self.reading() as session:
            return {uuid: job_id for uuid, job_id in session.execute(active_placements())}
