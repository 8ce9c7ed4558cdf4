"""Jobs, their placements on devices, and every state change (through states.check_transition)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hamr.pool.registry import accounting
from hamr.pool.registry.blobs import StagedBlob
from hamr.pool.registry.errors import NotFound, QuotaExceeded, RegistryError, StaleAttempt
from hamr.pool.registry.fleet import USABLE_HEALTH, active_placements
from hamr.pool.registry.models import NODE_UP, Device, Job, Node, Placement, Tenant, utcnow
from hamr.pool.registry.scope import Scope, require_tenant, scoped
from hamr.pool.registry.states import (
    ACTIVE,
    CANCELLED,
    FAILED,
    QUEUED,
    REQUEUED,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    check_transition,
)


class Jobs:
    def submit_job(
        self,
        tenant: int,
        executable_id: int,
        inputs: Mapping[str, np.ndarray | StagedBlob] | None = None,
        priority: int = 0,
        n_devices: int = 1,
    ) -> Job:
        """Queue a run of one of the tenant's executables; the inputs are stored as .npy blobs.

        An input is an array, or a .npy file staged in the blob store (an upload, checked by the caller)."""
        owner = require_tenant(tenant)
        if n_devices < 1:
            raise RegistryError(f"n_devices must be at least 1, got {n_devices}")
        self._require_executable(owner, executable_id)  # another tenant's executable reads as missing
        inputs = inputs or {}
        incoming = sum(v.size if isinstance(v, StagedBlob) else np.asarray(v).nbytes for v in inputs.values())
        with self.reading() as session:  # refused before any blob is written (checked again below, locked)
            self._admit(session, session.get(Tenant, owner), priority, n_devices, incoming)
        stored = {
            name: value.commit() if isinstance(value, StagedBlob) else self.blobs.put_array(value)
            for name, value in inputs.items()
        }
        size = sum(self.blobs.size(digest) for digest in stored.values())
        with self.writing() as session:
            self._admit(session, session.get(Tenant, owner, with_for_update=True), priority, n_devices, size)
            job = Job(
                tenant_id=owner,
                executable_id=executable_id,
                state=QUEUED,
                inputs=stored,
                priority=priority,
                n_devices=n_devices,
                attempts=0,
                outputs={},
                stored_bytes=size,
            )
            session.add(job)
            session.flush()
            self._event(session, "job.queued", f"job:{job.id}", owner, executable=executable_id, n_devices=n_devices)
        return job

    @staticmethod
    def _admit(session: Session, row: Tenant, priority: int, n_devices: int, size: int) -> None:
        if row.max_devices is not None and n_devices > row.max_devices:
            raise QuotaExceeded(
                f"tenant {row.name}: a job of {n_devices} devices exceeds max_devices {row.max_devices}"
            )
        accounting.check_priority(row, priority)
        accounting.check_queue(session, row)
        accounting.check_storage(session, row, size)

    def get_job(self, tenant: Scope, job_id: int) -> Job | None:
        return self._one(scoped(select(Job), Job.tenant_id, tenant).where(Job.id == job_id))

    def list_jobs(self, tenant: Scope, states: Iterable[str] | None = None) -> list[Job]:
        stmt = scoped(select(Job), Job.tenant_id, tenant)
        if states is not None:
            stmt = stmt.where(Job.state.in_(list(states)))
        return self._all(stmt.order_by(Job.id))

    def count_active_jobs(self, tenant: Scope) -> int:
        """Jobs scheduled or running (what max_running_jobs limits)."""
        stmt = scoped(select(func.count(Job.id)), Job.tenant_id, tenant).where(Job.state.in_(ACTIVE))
        return self._one(stmt)

    def list_placements(self, tenant: Scope, job_id: int) -> list[Placement]:
        stmt = scoped(select(Placement).join(Job, Job.id == Placement.job_id), Job.tenant_id, tenant)
        return self._all(stmt.where(Job.id == job_id).order_by(Placement.id))

    def job_inputs(self, tenant: Scope, job_id: int) -> dict[str, np.ndarray]:
        return {name: self.blobs.get_array(digest) for name, digest in self._require_job(tenant, job_id).inputs.items()}

    def job_outputs(self, tenant: Scope, job_id: int) -> dict[str, np.ndarray]:
        return {
            name: self.blobs.get_array(digest) for name, digest in self._require_job(tenant, job_id).outputs.items()
        }

    def _require_job(self, tenant: Scope, job_id: int) -> Job:
        job = self.get_job(tenant, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    # State changes. Each locks the job's row, checks the transition, and logs an event.

    def schedule_job(
        self, tenant: Scope, job_id: int, device_uuids: list[str], reason: str = "", start: bool = False
    ) -> Job:
        """Place a waiting job on `device_uuids` (all of a gang at once): a new attempt, one placement per device.

        `start`: the job also goes on to running in the same transaction (a dispatcher that hands
        it to a worker at once saves a transaction).
        """
        with self.writing() as session:
            job = self._locked_job(session, tenant, job_id)
            check_transition(job.id, job.state, SCHEDULED)
            if len(device_uuids) != job.n_devices or len(set(device_uuids)) != len(device_uuids):
                raise RegistryError(f"job {job.id}: needs {job.n_devices} distinct device(s), got {len(device_uuids)}")
            self._check_quota(session, job)
            devices = self._lock_free_devices(session, job, device_uuids)
            job.attempts += 1
            job = self._move(
                session,
                job,
                SCHEDULED,
                devices=device_uuids,
                attempt=job.attempts,
                reason=reason,
                placements=[
                    Placement(job_id=job.id, device_id=d.id, attempt=job.attempts, reason=reason) for d in devices
                ],
            )
            return self._move(session, job, RUNNING, attempt=job.attempts) if start else job

    # `attempt` (optional) guards a move with the attempt it is about: the move happens only while that
    # attempt is the job's current one, checked under the job's row lock (StaleAttempt otherwise). This
    # is what makes recorded results exactly-once per (job, attempt) when attempts run more than once.

    def start_job(self, tenant: Scope, job_id: int, attempt: int | None = None) -> Job:
        return self._change(tenant, job_id, RUNNING, attempt=attempt)

    def finish_job(
        self, tenant: Scope, job_id: int, outputs: Mapping[str, np.ndarray], attempt: int | None = None
    ) -> Job:
        stored = {name: self.blobs.put_array(array) for name, array in outputs.items()}
        size = sum(self.blobs.size(digest) for digest in stored.values())  # counted, never refused: the pool made them
        return self._change(tenant, job_id, SUCCEEDED, attempt=attempt, outputs=stored, output_bytes=size)

    def fail_job(self, tenant: Scope, job_id: int, error: str, attempt: int | None = None) -> Job:
        return self._change(tenant, job_id, FAILED, attempt=attempt, error=error)

    def requeue_job(self, tenant: Scope, job_id: int, reason: str, attempt: int | None = None) -> Job:
        """Take a job off its devices to be scheduled again (migration, a lost node, a drained device)."""
        return self._change(tenant, job_id, REQUEUED, attempt=attempt, reason=reason)

    def cancel_job(self, tenant: Scope, job_id: int) -> Job:
        return self._change(tenant, job_id, CANCELLED)

    def _change(self, tenant: Scope, job_id: int, new: str, attempt: int | None = None, **details) -> Job:
        with self.writing() as session:
            job = self._locked_job(session, tenant, job_id)
            if attempt is not None:
                if job.attempts != attempt:
                    raise StaleAttempt(
                        f"job {job.id}: attempt {attempt} cannot go to {new}: the current attempt is {job.attempts}"
                    )
                details["attempt"] = attempt
            return self._move(session, job, new, **details)

    def _move(self, session: Session, job: Job, new: str, placements=(), **details) -> Job:
        old = job.state
        check_transition(job.id, old, new)
        if old in ACTIVE and new not in ACTIVE:
            accounting.charge(session, job, utcnow())
        job.state = new
        if "outputs" in details:
            job.outputs = details["outputs"]
            job.stored_bytes += details.pop("output_bytes", 0)
        if "error" in details:
            job.error = details["error"]
        session.add_all(placements)
        payload = {k: v for k, v in details.items() if k not in ("outputs", "error")}
        self._event(session, f"job.{new}", f"job:{job.id}", job.tenant_id, previous=old, **payload)
        session.flush()
        return job

    @staticmethod
    def _locked_job(session: Session, tenant: Scope, job_id: int) -> Job:
        job = session.scalar(scoped(select(Job), Job.tenant_id, tenant).where(Job.id == job_id).with_for_update())
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    @staticmethod
    def _check_quota(session: Session, job: Job) -> None:
        tenant = session.get(Tenant, job.tenant_id, with_for_update=True)  # serialises a tenant's schedulings
        if tenant.max_running_jobs is None and tenant.max_devices is None:
            return
        active = select(Job).where(Job.tenant_id == job.tenant_id, Job.state.in_(ACTIVE), Job.id != job.id).subquery()
        running = session.scalar(select(func.count()).select_from(active))
        if tenant.max_running_jobs is not None and running >= tenant.max_running_jobs:
            raise QuotaExceeded(
                f"tenant {tenant.name}: {running} job(s) active, max_running_jobs is {tenant.max_running_jobs}"
            )
        held = session.scalar(select(func.coalesce(func.sum(active.c.n_devices), 0)))
        if tenant.max_devices is not None and held + job.n_devices > tenant.max_devices:
            raise QuotaExceeded(
                f"tenant {tenant.name}: {held} device(s) held + {job.n_devices} exceeds max_devices {tenant.max_devices}"
            )

    @staticmethod
    def _lock_free_devices(session: Session, job: Job, uuids: list[str]) -> list[Device]:
        stmt = select(Device).where(Device.uuid.in_(uuids)).order_by(Device.id).with_for_update()
        devices = {d.uuid: d for d in session.scalars(stmt)}
        nodes = {
            n.id: n for n in session.scalars(select(Node).where(Node.id.in_([d.node_id for d in devices.values()])))
        }
        for uuid in uuids:
            device = devices.get(uuid)
            if device is None:
                raise NotFound(f"device {uuid} not found")
            if device.drained or device.health not in USABLE_HEALTH or nodes[device.node_id].state != NODE_UP:
                why = "drained" if device.drained else f"health {device.health}, node {nodes[device.node_id].state}"
                raise RegistryError(f"job {job.id}: device {uuid} takes no placements ({why})")
        busy = session.execute(active_placements().where(Device.uuid.in_(uuids), Job.id != job.id)).first()
        if busy is not None:
            raise RegistryError(f"job {job.id}: device {busy[0]} is busy with job {busy[1]}")
        return [devices[u] for u in uuids]
