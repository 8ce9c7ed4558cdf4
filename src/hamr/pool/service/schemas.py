"""The JSON bodies the service takes and returns (Pydantic). Limits mirror the registry's columns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from hamr.pool.drivers.base import DEGRADED, HEALTHY, UNHEALTHY, DeviceReport
from hamr.pool.registry import JOB_STATES
from hamr.pool.registry.models import (
    DEFAULT_MAX_INFLIGHT_REQUESTS,
    DEFAULT_MAX_QUEUED_JOBS,
    DEFAULT_MAX_QUEUED_REQUESTS,
    DEFAULT_MAX_STORED_BYTES,
)

MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL
MAX_BIG = 2**63 - 1
MAX_DEVICES = 4096  # of a gang job
MAX_SHARD = MAX_DEVICES - 1

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
TEXT = r"^[^\x00]*$"  # PostgreSQL text holds no NUL bytes
Uuid = Annotated[str, Path(min_length=1, max_length=255, pattern=TEXT)]
Name = Annotated[str, Field(min_length=1, max_length=255, pattern=TEXT)]
JobState = Literal[JOB_STATES]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every error: one line."""

    detail: str


ERRORS = {
    status: {"model": ErrorOut, "description": why}
    for status, why in (
        (400, "malformed upload, or a request the registry refuses"),
        (401, "missing, invalid or revoked token"),
        (403, "an admin route with a tenant token, or beyond a quota"),
        (404, "no such object for this token"),
        (409, "the job state machine or a unique name refuses it"),
        (413, "the body is over the upload limit, or storing it would exceed the tenant's max_stored_bytes"),
        (422, "the request does not match its schema"),
        (429, "the tenant's waiting jobs are at max_queued_jobs (Retry-After says when to try again)"),
    )
}


class DeviceReportIn(Strict):
    """One device of a heartbeat, as `hamr.pool.drivers.base.DeviceReport`."""

    uuid: Name
    driver: Annotated[str, Field(min_length=1, max_length=64)]
    vendor: Annotated[str, Field(max_length=255)]
    kind: Annotated[str, Field(min_length=1, max_length=32)]
    architecture: Annotated[str, Field(max_length=255)]
    memory_total: Annotated[int, Field(ge=0, le=MAX_BIG)]
    memory_free: Annotated[int, Field(ge=0, le=MAX_BIG)] | None = None
    compute_units: Annotated[int, Field(ge=0, le=MAX_ID)]
    health: Literal[HEALTHY, DEGRADED, UNHEALTHY] = HEALTHY
    targets: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = []
    local_id: Annotated[str, Field(max_length=64)] = ""
    details: dict[str, Any] = {}

    def report(self) -> DeviceReport:
        return DeviceReport(**(self.model_dump() | {"targets": tuple(self.targets)}))


class Heartbeat(Strict):
    node: Name
    devices: Annotated[list[DeviceReportIn], Field(max_length=4096)]
    address: Annotated[str, Field(max_length=255)] | None = None
    labels: dict[str, Any] | None = None


class NodeOut(BaseModel):
    name: str
    address: str
    labels: dict[str, Any]
    state: str
    last_heartbeat: datetime
    created_at: datetime


class PublicDevice(BaseModel):
    """What a tenant sees of a schedulable device: no node, local id, details or drain flag."""

    uuid: str
    vendor: str
    kind: str
    architecture: str
    memory_total: int
    memory_free: int | None
    compute_units: int
    health: str
    targets: list[str]


class DeviceOut(PublicDevice):
    """What an admin sees."""

    node: str
    driver: str
    local_id: str
    details: dict[str, Any]
    drained: bool
    last_seen: datetime


class ExecutableOut(BaseModel):
    id: int
    tenant_id: int
    name: str
    sha256: str
    targets: list[str]
    size: int
    created_at: datetime


class JobOut(BaseModel):
    id: int
    tenant_id: int
    executable_id: int
    state: str
    inputs: list[str]
    outputs: list[str]
    attempts: int
    priority: int
    n_devices: int
    error: str | None
    created_at: datetime
    updated_at: datetime


class PlacementOut(BaseModel):
    attempt: int
    device: str  # the device's uuid
    reason: str  # the scheduler's reason for this placement
    created_at: datetime


class JobForm(Strict):
    """The non-file fields of a job submission (multipart); every file part is an input."""

    executable_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    n_devices: Annotated[int, Field(ge=1, le=MAX_DEVICES)] = 1


Count = Annotated[int, Field(ge=0, le=MAX_ID)]
Priority = Annotated[int, Field(ge=-1000, le=1000, description="the highest priority the tenant's jobs may ask for")]
Weight = Annotated[int, Field(ge=1, le=1000, description="its fair share against the other tenants' weights")]


class TenantLimitsIn(Strict):
    """A tenant's quotas and limits (docs/pool.md, "Fairness"); null lifts a max_* limit."""

    max_devices: Count | None = None
    max_running_jobs: Count | None = None
    max_priority: Priority = 0
    max_queued_jobs: Count | None = DEFAULT_MAX_QUEUED_JOBS
    max_stored_bytes: Annotated[int, Field(ge=0, le=MAX_BIG)] | None = DEFAULT_MAX_STORED_BYTES
    max_inflight_requests: Count | None = DEFAULT_MAX_INFLIGHT_REQUESTS
    max_queued_requests: Count | None = DEFAULT_MAX_QUEUED_REQUESTS
    weight: Weight = 1


class TenantIn(TenantLimitsIn):
    name: Name


class TenantPatch(TenantLimitsIn):
    """Only the fields sent change."""

    max_priority: Priority | None = None  # type: ignore[assignment]
    weight: Weight | None = None  # type: ignore[assignment]


class TenantOut(BaseModel):
    id: int
    name: str
    max_devices: int | None
    max_running_jobs: int | None
    max_priority: int
    max_queued_jobs: int | None
    max_stored_bytes: int | None
    max_inflight_requests: int | None
    max_queued_requests: int | None
    weight: int
    usage_seconds: float = Field(description="device-seconds of its jobs, decayed (half-life 1 h) as of usage_at")
    usage_at: datetime | None
    created_at: datetime


class TenantCreated(BaseModel):
    tenant: TenantOut
    token: str = Field(description="the tenant's API token, shown this once (the registry keeps only its sha256)")


class DeploymentIn(Strict):
    executable_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    replicas: Annotated[int, Field(ge=0, le=1024)] = 1
    name: Annotated[str, Field(max_length=255, pattern=TEXT)] = ""
    share: Annotated[int, Field(ge=1, le=1000, description="thousandths of a device each replica reserves")] = 500


class DeploymentScale(Strict):
    replicas: Annotated[int, Field(ge=0, le=1024)]


class ReplicaOut(BaseModel):
    id: int
    state: str  # pending, ready (serving), stopped, failed
    device: str  # the device's uuid
    kind: str
    architecture: str
    reason: str  # where the reconciler placed it and why, or why it stopped


class DeploymentOut(BaseModel):
    id: int
    tenant_id: int
    executable_id: int
    name: str
    replicas: int  # wanted
    share: int
    state: str
    ready: int  # replicas serving now
    replica_list: list[ReplicaOut] = Field(description="live replicas (pending or ready)")
    created_at: datetime
    updated_at: datetime


def node_out(node) -> NodeOut:
    return NodeOut.model_validate(node, from_attributes=True)


def public_device(device) -> PublicDevice:
    return PublicDevice.model_validate(device, from_attributes=True)


def device_out(device, node_names: dict[int, str]) -> DeviceOut:
    fields = PublicDevice.model_validate(device, from_attributes=True).model_dump()
    return DeviceOut(
        **fields,
        node=node_names.get(device.node_id, ""),
        driver=device.driver,
        local_id=device.local_id,
        details=device.details,
        drained=device.drained,
        last_seen=device.last_seen,
    )


def executable_out(record) -> ExecutableOut:
    return ExecutableOut.model_validate(record, from_attributes=True)


def job_out(job) -> JobOut:
    fields = {name: getattr(job, name) for name in JobOut.model_fields if name not in ("inputs", "outputs")}
    return JobOut(**fields, inputs=sorted(job.inputs), outputs=sorted(job.outputs))


def deployment_out(deployment, replicas) -> DeploymentOut:
    listed = [
        ReplicaOut(id=r.id, state=r.state, device=r.device, kind=r.kind, architecture=r.architecture, reason=r.reason)
        for r in replicas
    ]
    fields = {
        name: getattr(deployment, name) for name in DeploymentOut.model_fields if name not in ("ready", "replica_list")
    }
    return DeploymentOut(**fields, ready=sum(r.state == "ready" for r in listed), replica_list=listed)


def tenant_out(tenant) -> TenantOut:
    return TenantOut.model_validate(tenant, from_attributes=True)
