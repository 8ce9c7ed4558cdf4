"""What each tenant holds and has used: its waiting jobs, its stored bytes, its decayed device-seconds.

The limits are the tenant's columns (max_priority, max_queued_jobs, max_stored_bytes); each
check raises one line naming the tenant, the limit, and what was asked. Stored bytes are the
sizes of its executables plus its jobs' input and output blobs, counted per reference (two
tenants storing the same bytes both count them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hamr.pool.registry.errors import QueueFull, QuotaExceeded, StorageFull
from hamr.pool.registry.models import ExecutableRecord, Job, Tenant
from hamr.pool.registry.states import WAITING
from hamr.pool.scheduler.fairshare import decayed


def check_priority(tenant: Tenant, priority: int) -> None:
    if priority > tenant.max_priority:
        raise QuotaExceeded(
            f"tenant {tenant.name} may ask for priority up to {tenant.max_priority} "
            f"(its max_priority, set by an admin); this job asks for {priority}"
        )


def check_queue(session: Session, tenant: Tenant) -> None:
    if tenant.max_queued_jobs is None:
        return
    waiting = session.scalar(select(func.count(Job.id)).where(Job.tenant_id == tenant.id, Job.state.in_(WAITING)))
    if waiting >= tenant.max_queued_jobs:
        raise QueueFull(
            f"tenant {tenant.name} has {waiting} job(s) waiting, its max_queued_jobs is "
            f"{tenant.max_queued_jobs}: submit again once some have started"
        )


def stored_bytes(session: Session, tenant_id: int) -> int:
    executables = select(func.coalesce(func.sum(ExecutableRecord.size), 0)).where(
        ExecutableRecord.tenant_id == tenant_id
    )
    jobs = select(func.coalesce(func.sum(Job.stored_bytes), 0)).where(Job.tenant_id == tenant_id)
    return int(session.scalar(executables)) + int(session.scalar(jobs))


def check_storage(session: Session, tenant: Tenant, adding: int) -> None:
    if tenant.max_stored_bytes is None:
        return
    held = stored_bytes(session, tenant.id)
    if held + adding > tenant.max_stored_bytes:
        raise StorageFull(
            f"tenant {tenant.name} stores {held:,} bytes; {adding:,} more would exceed its "
            f"max_stored_bytes of {tenant.max_stored_bytes:,}"
        )


def charge(session: Session, job: Job, now: datetime) -> None:
    """A job's attempt left its devices: its tenant's usage grows by the device-seconds it held them."""
    held_s = max((now - job.updated_at).total_seconds(), 0.0) * job.n_devices
    tenant = session.get(Tenant, job.tenant_id, with_for_update=True)
    since = (now - tenant.usage_at).total_seconds() if tenant.usage_at is not None else 0.0
    tenant.usage_seconds = decayed(tenant.usage_seconds, since) + held_s
    tenant.usage_at = now
