"""/v1/agents/{node}: remote node agents (`hamr agent`, with an admin token): heartbeats, work, results,
and the requests of the deployment replicas they host.

The pool's side is hamr.pool.nodes.remote.server.RemoteNodes (`create_app(..., remote=...)`); without it
these routes answer 503. A result for a (job, attempt, shard) that no run waits for (requeued,
cancelled, already posted, or the pool restarted) is 409 and recorded nowhere; so is an answer
to a replica request that no longer waits (hamr/pool/nodes/remote/server_replicas.py). Outputs that are not
the model's (hamr/pool/nodes/remote/output_check.py: a name it does not give, one missing, a wrong dtype or
shape) are 422, and the attempt or request fails with that line; none of them is recorded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from hamr.pool.nodes.remote.names import NODE_NAME
from hamr.pool.nodes.remote.server import AgentConflict, RemoteNodes
from hamr.pool.nodes.remote.server_replicas import ReplicaRequest
from hamr.pool.service.auth import Admin, NodeAgent, Reg
from hamr.pool.service.errors import one_line
from hamr.pool.service.schemas import MAX_ID, MAX_SHARD, TEXT, DeviceReportIn, ErrorOut, Id, NodeOut, Strict, node_out
from hamr.pool.service.strict_json import StrictJsonRoute
from hamr.pool.service.uploads import BINARY, discard, read_fields_and_arrays, request_body
from hamr.pool.service.wake import WAKES_POOL
from hamr.pool.wire import tensors

router = APIRouter(
    prefix="/v1/agents",
    tags=["agents"],
    route_class=StrictJsonRoute,
    responses={503: {"model": ErrorOut, "description": "this pool takes no remote agents"}},
)

MAX_WAIT_S = 30.0
NodeName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=255,
        pattern=NODE_NAME.pattern,
        description="the agent's node name (letters, digits, '.', '_', '-')",
    ),
]
Count = Annotated[int, Field(ge=1, le=MAX_ID)]
Shard = Annotated[int, Field(ge=0, le=MAX_SHARD, description="a gang job's shard (0 for any other job)")]
Line = Annotated[str, Field(max_length=4096, pattern=TEXT)]


def remote_of(request: Request) -> RemoteNodes:
    remote = request.app.state.remote
    if remote is None:
        raise HTTPException(503, "this pool takes no remote agents (it was started without them)")
    return remote


Remote = Annotated[RemoteNodes, Depends(remote_of)]


class RunRef(Strict):
    job: Count
    attempt: Count
    shard: Shard = 0


class AgentHeartbeat(Strict):
    devices: Annotated[list[DeviceReportIn], Field(max_length=4096)]
    address: Annotated[str, Field(max_length=255, pattern=TEXT)] | None = None
    labels: dict[str, Any] | None = None
    running: (
        Annotated[
            list[RunRef],
            Field(max_length=65536, description="the (job, attempt, shard)s the agent holds and has not posted yet"),
        ]
        | None
    ) = None


class WorkItem(BaseModel):
    kind: Literal["job"] = "job"
    job: int
    attempt: int
    shard: int = Field(0, description="run this part of the inputs: gangs.split_inputs(inputs, shards)[shard]")
    shards: int = Field(1, description="a gang job's size (1: the whole inputs)")
    device: str = Field(description="the local id of the device to run it on (cpu, cuda:0)")
    executable_id: int = Field(description="download with GET /v1/executables/{id}/file")
    executable_sha256: str
    inputs: dict[str, str] = Field(description="input name -> sha256 of its .npy (GET /v1/jobs/{job}/inputs/{name})")


class ReplicaItem(BaseModel):
    kind: Literal["load", "infer"] = Field(description="load (and warm) a replica's session, or run one request on it")
    request: int = Field(description="answer with POST /v1/agents/{node}/requests/{request}")
    replica: int
    device: str = Field(description="the local id of the device the replica is on")
    executable_id: int = Field(description="download with GET /v1/executables/{id}/file")
    executable_sha256: str = Field(description="with `device`, the key of the agent's session")


AnyItem = Annotated[WorkItem | ReplicaItem, Field(discriminator="kind")]


class ReplicaAnswer(Strict):
    """A load's answer (`target` or `error`), or a failed inference's (`error`)."""

    target: Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT)] | None = None
    error: Annotated[str, Field(min_length=1, max_length=4096, pattern=TEXT)] | None = None


class ResultForm(Strict):
    """The fields of a result (multipart); every file part is an output, as .npy."""

    job: Count
    attempt: Count
    shard: Shard = 0
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
    {
        "multipart/form-data": {
            "type": "object",
            "required": ["job", "attempt", "ok"],
            "additionalProperties": BINARY,
            "properties": {
                "job": {"type": "integer"},
                "attempt": {"type": "integer"},
                "shard": {"type": "integer"},
                "ok": {"type": "boolean"},
                "latency_s": {"type": "number"},
                **{k: {"type": "string"} for k in ("device", "target", "error", "died")},
            },
        }
    },
)


class AgentTokenOut(BaseModel):
    node: str
    token: str = Field(description="the node's agent token, shown this once (the registry keeps only its sha256)")


@router.post(
    "/{node}/tokens",
    response_model=AgentTokenOut,
    status_code=201,
    summary="A token for this node's agent only (its /v1/agents routes and the downloads of its work)",
)
def create_agent_token(node: NodeName, registry: Reg, who: Admin, remote: Remote) -> AgentTokenOut:
    token, _ = registry.create_token(None, node=node, label=f"agent of node {node}")
    return AgentTokenOut(node=node, token=token)


@router.post(
    "/{node}/heartbeat",
    response_model=NodeOut,
    summary="An agent's heartbeat: registers its node and devices",
    dependencies=WAKES_POOL,
)
async def heartbeat(node: NodeName, body: AgentHeartbeat, request: Request, who: NodeAgent, remote: Remote) -> NodeOut:
    reports = [d.report() for d in body.devices]
    running = None if body.running is None else {(r.job, r.attempt, r.shard) for r in body.running}
    address = body.address or (request.client.host if request.client else None)
    try:
        row = await run_in_threadpool(remote.heartbeat_from, node, reports, address, body.labels, running)
    except AgentConflict as exc:
        raise HTTPException(409, str(exc)) from None
    return node_out(row)


@router.post("/{node}/work", response_model=list[AnyItem], summary="The work sent to a node (a long poll)")
async def work(
    node: NodeName,
    request: Request,
    who: NodeAgent,
    remote: Remote,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_S, allow_inf_nan=False, description="seconds to wait for work when there is none"),
    ] = 0.0,
):
    return await remote.node(node).take_work(wait, gone=request.is_disconnected)


@router.post(
    "/{node}/results",
    response_model=ResultOut,
    openapi_extra=RESULT_BODY,
    summary="A run's result",
    dependencies=WAKES_POOL,
)
async def results(node: NodeName, request: Request, who: NodeAgent, remote: Remote) -> ResultOut:
    target = remote.node(node)
    result, staged = await read_fields_and_arrays(request, ResultForm, "output", blobs=request.app.state.registry.blobs)
    try:
        if result.ok and (result.latency_s is None or result.died):
            raise HTTPException(422, "an ok result needs latency_s and no died")
        if not result.ok and staged:
            raise HTTPException(422, "a failed result has no outputs")
        # memory-mapped: the run reads them from these files (still mapped once removed, on Linux)
        outputs = {name: np.load(blob.path, mmap_mode="r", allow_pickle=False) for name, blob in staged.items()}
    finally:
        discard(staged)
    mismatch = None
    if result.ok:
        mismatch = await run_in_threadpool(
            remote.result_mismatch, node, result.job, result.attempt, result.shard, outputs
        )
    reply = result.model_dump() | {"outputs": outputs}
    if mismatch is not None:  # the attempt fails with that line; none of these outputs is recorded
        reply = result.model_dump() | {"ok": False, "error": mismatch, "outputs": {}}
    if target.deliver(result.job, result.attempt, reply, shard=result.shard) is None:
        run = f"job {result.job} attempt {result.attempt}" + (f" shard {result.shard}" if result.shard else "")
        raise HTTPException(
            409,
            f"no run of {run} waits on node {node} "
            "(requeued, cancelled, already posted, or the pool restarted): not recorded",
        )
    if mismatch is not None:
        raise HTTPException(422, f"{mismatch}: the attempt failed")
    return ResultOut(job=result.job, attempt=result.attempt, accepted=True)


ANSWER_BODY = request_body(
    "an inference's outputs as raw tensors; or JSON: a load's target or error, a failed inference's error",
    {tensors.MEDIA_TYPE: BINARY, "application/json": ReplicaAnswer.model_json_schema()},
)
EXPECTED_ANSWER = {
    "load": 'JSON {"target"} or {"error"}',
    "infer": f'its outputs ({tensors.MEDIA_TYPE}) or JSON {{"error"}}',
}


def _waiting(remote: RemoteNodes, node: str, request_id: int) -> ReplicaRequest:
    request = remote.node(node).requests.get(request_id)
    if request is None or request.done():
        raise HTTPException(
            409, f"no replica request {request_id} waits on node {node} (answered, timed out, or the pool restarted)"
        )
    return request


@router.get(
    "/{node}/requests/{request_id}",
    response_class=Response,
    summary="A replica inference's inputs",
    responses={
        200: {"content": {tensors.MEDIA_TYPE: {"schema": BINARY}}, "description": "the inputs"},
        409: {"model": ErrorOut, "description": "no such request waits"},
    },
)
async def request_inputs(node: NodeName, request_id: Id, who: NodeAgent, remote: Remote) -> Response:
    request = _waiting(remote, node, request_id)
    if request.kind != "infer":
        raise HTTPException(409, f"replica request {request_id} is a {request.kind}: it has no inputs")
    return Response(request.inputs, media_type=tensors.MEDIA_TYPE)


@router.post(
    "/{node}/requests/{request_id}",
    status_code=204,
    response_class=Response,
    openapi_extra=ANSWER_BODY,
    summary="The answer to a replica request",
    responses={409: {"model": ErrorOut, "description": "no such request waits"}},
)
async def answer_request(node: NodeName, request_id: Id, request: Request, who: NodeAgent, remote: Remote) -> Response:
    waiting = _waiting(remote, node, request_id)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    wrong = HTTPException(
        422, f"the answer to replica request {request_id}, a {waiting.kind}, is {EXPECTED_ANSWER[waiting.kind]}"
    )
    if media == tensors.MEDIA_TYPE:
        if waiting.kind != "infer":
            raise wrong
        try:
            outputs = tensors.decode(body)
        except tensors.TensorsError as exc:
            raise HTTPException(400, one_line(exc)) from None
        mismatch = await run_in_threadpool(remote.answer_mismatch, waiting, outputs)
        if mismatch is not None:  # the request fails with that line, as when the agent answers an error
            waiting.answer(error=mismatch)
            raise HTTPException(422, mismatch)
        waiting.answer(outputs=outputs)
        return Response(status_code=204)
    if media != "application/json":
        raise HTTPException(415, f"send {tensors.MEDIA_TYPE} or application/json, not '{media or 'none'}'")
    try:
        answer = ReplicaAnswer.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPException(
            422, "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        ) from None
    if (answer.target is None) == (answer.error is None) or (answer.target is not None and waiting.kind != "load"):
        raise wrong
    waiting.answer(target=answer.target or "", error=answer.error or "")
    return Response(status_code=204)
