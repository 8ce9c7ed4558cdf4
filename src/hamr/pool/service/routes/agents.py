"""/v1/agents/{node}: remote node agents (`hamr agent`, with an admin token): heartbeats, work, results.

The pool's side is hamr.pool.remote.RemoteAgents (`create_app(..., remote=...)`); without it
these routes answer 503. A result for a (job, attempt) that no run waits for (requeued,
cancelled, already posted, or the pool restarted) is 409 and recorded nowhere.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hamr.pool.remote import NODE_NAME, AgentConflict, RemoteAgents
from hamr.pool.service.auth import Admin
from hamr.pool.service.schemas import MAX_ID, TEXT, DeviceReportIn, ErrorOut, NodeOut, Strict, node_out
from hamr.pool.service.uploads import BINARY, read_fields_and_arrays, request_body
from hamr.pool.service.wake import WAKES_POOL

router = APIRouter(prefix="/v1/agents", tags=["agents"],
                   responses={503: {"model": ErrorOut, "description": "this pool takes no remote agents"}})

MAX_WAIT_S = 30.0
NodeName = Annotated[str, Path(min_length=1, max_length=255, pattern=NODE_NAME.pattern,
                               description="the agent's node name (letters, digits, '.', '_', '-')")]
Count = Annotated[int, Field(ge=1, le=MAX_ID)]
Line = Annotated[str, Field(max_length=4096, pattern=TEXT)]


def remote_of(request: Request) -> RemoteAgents:
    remote = request.app.state.remote
    if remote is None:
        raise HTTPException(503, "this pool takes no remote agents (it was started without them)")
    return remote


Remote = Annotated[RemoteAgents, Depends(remote_of)]


class RunRef(Strict):
    job: Count
    attempt: Count


class AgentHeartbeat(Strict):
    devices: Annotated[list[DeviceReportIn], Field(max_length=4096)]
    address: Annotated[str, Field(max_length=255, pattern=TEXT)] | None = None
    labels: dict[str, Any] | None = None
    running: Annotated[list[RunRef], Field(max_length=65536,
                                           description="the (job, attempt)s the agent holds and has not posted yet")] | None = None


class WorkItem(BaseModel):
    job: int
    attempt: int
    device: str = Field(description="the local id of the device to run it on (cpu, cuda:0)")
    executable_id: int = Field(description="download with GET /v1/executables/{id}/file")
    executable_sha256: str
    inputs: dict[str, str] = Field(description="input name -> sha256 of its .npy (GET /v1/jobs/{job}/inputs/{name})")


class ResultForm(Strict):
    """The fields of a result (multipart); every file part is an output, as .npy."""

    job: Count
    attempt: Count
    ok: bool
    latency_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    device: Annotated[str, Field(max_length=64, pattern=TEXT)] | None = None
    target: Annotated[str, Field(max_length=64, pattern=TEXT)] | None = None
    error: Line | None = None
    died: Line | None = Field(None, description="the worker process died: the job is requeued, not failed")


class ResultOut(BaseModel):
    job: int
    attempt: int
    accepted: bool


RESULT_BODY = request_body(
    "multipart: the fields of ResultForm, and one raw .npy file part per output, named as the output",
    {"multipart/form-data": {"type": "object", "required": ["job", "attempt", "ok"], "additionalProperties": BINARY,
                             "properties": {"job": {"type": "integer"}, "attempt": {"type": "integer"},
                                            "ok": {"type": "boolean"}, "latency_s": {"type": "number"},
                                            **{k: {"type": "string"} for k in ("device", "target", "error", "died")}}}},
)  # fmt: skip


@router.post("/{node}/heartbeat", response_model=NodeOut, summary="An agent's heartbeat: registers its node and devices",
             dependencies=WAKES_POOL)
async def heartbeat(node: NodeName, body: AgentHeartbeat, request: Request, who: Admin, remote: Remote) -> NodeOut:
    reports = [d.report() for d in body.devices]
    running = None if body.running is None else {(r.job, r.attempt) for r in body.running}
    address = body.address or (request.client.host if request.client else None)
    try:
        row = await run_in_threadpool(remote.heartbeat_from, node, reports, address, body.labels, running)
    except AgentConflict as exc:
        raise HTTPException(409, str(exc)) from None
    return node_out(row)


@router.post("/{node}/work", response_model=list[WorkItem], summary="The work sent to a node (a long poll)")
async def work(node: NodeName, request: Request, who: Admin, remote: Remote,
               wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, allow_inf_nan=False,
                                            description="seconds to wait for work when there is none")] = 0.0):
    return await remote.node(node).take_work(wait, gone=request.is_disconnected)


@router.post("/{node}/results", response_model=ResultOut, openapi_extra=RESULT_BODY, summary="A run's result",
             dependencies=WAKES_POOL)
async def results(node: NodeName, request: Request, who: Admin, remote: Remote) -> ResultOut:
    target = remote.node(node)
    result, outputs = await read_fields_and_arrays(request, ResultForm, "output")
    if result.ok and (result.latency_s is None or result.died):
        raise HTTPException(422, "an ok result needs latency_s and no died")
    if not result.ok and outputs:
        raise HTTPException(422, "a failed result has no outputs")
    reply = result.model_dump() | {"outputs": outputs}
    if target.deliver(result.job, result.attempt, reply) is None:
        raise HTTPException(409, f"no run of job {result.job} attempt {result.attempt} waits on node {node} "
                                 "(requeued, cancelled, already posted, or the pool restarted): not recorded")
    return ResultOut(job=result.job, attempt=result.attempt, accepted=True)
