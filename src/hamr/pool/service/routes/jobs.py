"""/v1/jobs: submit (multipart: fields executable_id, priority, n_devices; one .npy file part per input), status,
inputs, outputs, cancel.

An input or output is named in the path as the model names it, `/` included (`save_infer_model/scale_0.tmp_1`);
clients percent-encode the name.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from hamr.pool.registry import NotFound
from hamr.pool.registry.states import FINAL
from hamr.pool.service.auth import Authed, AuthedOrAgent, Reg, read_scope
from hamr.pool.service.downloads import blob_response
from hamr.pool.service.schemas import Id, JobForm, JobOut, JobState, PlacementOut, job_out
from hamr.pool.service.strict_json import StrictJsonRoute
from hamr.pool.service.uploads import BINARY, discard, read_fields_and_arrays, request_body
from hamr.pool.service.wake import WAKES_POOL

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=StrictJsonRoute)
WAIT_FIRST_S, WAIT_LONGEST_S = 0.002, 0.01  # a waiting GET re-reads the job this often, backing off

SUBMIT_BODY = request_body(
    "multipart: the fields of JobForm, and one raw .npy file part per input, named as the input",
    {
        "multipart/form-data": {
            "type": "object",
            "required": ["executable_id"],
            "additionalProperties": BINARY,
            "properties": {name: {"type": "integer"} for name in JobForm.model_fields},
        }
    },
)


@router.post(
    "",
    response_model=JobOut,
    status_code=201,
    openapi_extra=SUBMIT_BODY,
    summary="Submit a job",
    dependencies=WAKES_POOL,
)
async def submit(request: Request, registry: Reg, who: Authed) -> JobOut:
    owner = who.owner()
    params, inputs = await read_fields_and_arrays(request, JobForm, "input", blobs=registry.blobs)
    try:
        job = await run_in_threadpool(
            registry.submit_job,
            owner,
            params.executable_id,
            inputs,
            priority=params.priority,
            n_devices=params.n_devices,
        )
    finally:
        discard(inputs)  # nothing once committed
    return job_out(job)


@router.get("", response_model=list[JobOut], summary="List jobs")
def list_jobs(registry: Reg, who: Authed, state: Annotated[list[JobState] | None, Query()] = None) -> list[JobOut]:
    return [job_out(j) for j in registry.list_jobs(who.scope, states=state)]


def _job(registry, who, job_id: int, scope=None):
    job = registry.get_job(who.scope if scope is None else scope, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


@router.get("/{job_id}", response_model=JobOut, summary="A job's status")
async def get_job(
    job_id: Id,
    registry: Reg,
    who: Authed,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for the job to finish")] = 0.0,
) -> JobOut:
    """With `wait`, answers as soon as the job is succeeded, failed or cancelled, or after `wait` seconds."""
    deadline, pause = time.monotonic() + wait, WAIT_FIRST_S
    while True:
        job = await run_in_threadpool(_job, registry, who, job_id)
        if job.state in FINAL or time.monotonic() >= deadline:
            return job_out(job)
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, WAIT_LONGEST_S)


@router.get(
    "/{job_id}/placements",
    response_model=list[PlacementOut],
    summary="Where each attempt of a job ran, and why the scheduler chose it",
)
def get_placements(job_id: Id, registry: Reg, who: Authed) -> list[PlacementOut]:
    _job(registry, who, job_id)
    uuids = {d.id: d.uuid for d in registry.list_devices()}
    return [
        PlacementOut(attempt=p.attempt, device=uuids.get(p.device_id, "?"), reason=p.reason, created_at=p.created_at)
        for p in registry.list_placements(who.scope, job_id)
    ]


@router.get(
    "/{job_id}/outputs/{name:path}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {"schema": BINARY}}, "description": "the output as a .npy file"}
    },
    summary="One output of a finished job, as .npy",
)
def get_output(
    job_id: Id, name: Annotated[str, Path(min_length=1, max_length=255)], registry: Reg, who: Authed
) -> Response:
    job = _job(registry, who, job_id)
    return _npy_response(registry, job, "output", job.outputs, name, context=f"state {job.state}; ")


@router.get(
    "/{job_id}/inputs/{name:path}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {"schema": BINARY}}, "description": "the input as a .npy file"}
    },
    summary="One input of a job, as .npy (what a remote agent runs it on)",
)
def get_input(
    job_id: Id,
    name: Annotated[str, Path(min_length=1, max_length=255)],
    request: Request,
    registry: Reg,
    who: AuthedOrAgent,
) -> Response:
    job = _job(registry, who, job_id, scope=read_scope(request, who, job=job_id))
    return _npy_response(registry, job, "input", job.inputs, name)


def _npy_response(registry, job, what: str, stored: dict, name: str, context: str = "") -> Response:
    """One of a job's stored arrays (`what`: input or output) as a .npy download."""
    digest = stored.get(name)
    if digest is None:
        raise NotFound(f"job {job.id} has no {what} '{name}' ({context}{what}s: {', '.join(sorted(stored)) or 'none'})")
    return blob_response(registry.blobs.read_chunks(digest), f"job-{job.id}-{what}.npy")


@router.post("/{job_id}/cancel", response_model=JobOut, summary="Cancel a job", dependencies=WAKES_POOL)
def cancel(job_id: Id, registry: Reg, who: Authed) -> JobOut:
    return job_out(registry.cancel_job(who.scope, job_id))
