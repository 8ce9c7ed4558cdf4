"""/v1/deployments: N replicas of an executable kept loaded on devices, spread across kinds; and their requests.

`POST /v1/deployments/{id}/infer` takes the inputs as `application/x-hamr-tensors`
(hamr/pool/wire/tensors.py) or as multipart .npy parts, and answers the outputs as
`application/x-hamr-tensors`. It runs on the ready replica, of every node's replica host, that
would finish it soonest, and waits up to `wait` seconds for one while replicas load or move.
It is admitted first (service/admission.py): beyond the tenant's and the deployment's running and
waiting requests, 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from hamr.errors import HamrError
from hamr.pool.dispatch.replicas import NoReplica
from hamr.pool.registry import NotFound
from hamr.pool.service.admission import Busy, run_in
from hamr.pool.service.auth import Authed, Reg
from hamr.pool.service.errors import one_line
from hamr.pool.service.schemas import DeploymentIn, DeploymentOut, DeploymentScale, ErrorOut, Id, deployment_out
from hamr.pool.service.strict_json import StrictJsonRoute
from hamr.pool.service.uploads import BINARY, is_multipart, read_fields_and_arrays, request_body
from hamr.pool.service.wake import WAKES_POOL
from hamr.pool.wire import tensors

router = APIRouter(prefix="/v1/deployments", tags=["deployments"], route_class=StrictJsonRoute)

INFER_BODY = request_body(
    "the inputs: named raw tensors (application/x-hamr-tensors), or one .npy file part per input",
    {tensors.MEDIA_TYPE: BINARY, "multipart/form-data": {"type": "object", "additionalProperties": BINARY}},
)
POLL_S, RECHECK_S = 0.02, 1.0


def serving(hosts, deployment_id: int):
    """The host whose best ready replica of the deployment would finish a request soonest, or None."""
    best, soonest = None, None
    for host in list(hosts):
        expected = host.expected(deployment_id)
        if expected is not None and (soonest is None or expected < soonest):
            best, soonest = host, expected
    return best


async def run_on(host, deployment_id: int, feeds: dict, executor) -> dict:
    """Run a request on the host's replica that would finish it soonest (NoReplica when it has none),
    on a thread of `executor`: the data plane's (service/admission.py), not the API's."""
    replica = host.pick(deployment_id)
    if replica.quick():  # shorter than a hop to a worker thread: run it here
        return host.run(replica, feeds)
    return await run_in(executor, host.run, replica, feeds)


def owner_of(hosts, deployment_id: int) -> int | None:
    """The deployment's tenant, as far as this process's hosts know (they know it once they host a
    replica of it; that never changes)."""
    return next((h.tenants[deployment_id] for h in list(hosts) if deployment_id in h.tenants), None)


def owner_allows(hosts, deployment_id: int, token) -> bool:
    """The token may use the deployment, as far as this process's hosts know. False: ask the registry."""
    owner = owner_of(hosts, deployment_id)
    return owner is not None and (token.admin or owner == token.tenant_id)


def ready_replicas(hosts, deployment_id: int) -> int:
    return sum(len(h.by_deployment.get(deployment_id) or ()) for h in list(hosts))


def expected_s(hosts, deployment_id: int) -> float | None:
    """When a request sent now would be done on the deployment's best replica here (for Retry-After)."""
    host = serving(hosts, deployment_id)
    return host.expected(deployment_id) if host is not None else None


def _out(registry, who, deployment) -> DeploymentOut:
    return deployment_out(deployment, registry.list_replicas(who.scope, deployment.id))


def _deployment(registry, who, deployment_id: int):
    deployment = registry.get_deployment(who.scope, deployment_id)
    if deployment is None:
        raise NotFound(f"deployment {deployment_id} not found")
    return deployment


@router.post(
    "",
    response_model=DeploymentOut,
    status_code=201,
    summary="Deploy an executable as N replicas",
    dependencies=WAKES_POOL,
)
def create(body: DeploymentIn, registry: Reg, who: Authed) -> DeploymentOut:
    deployment = registry.create_deployment(
        who.owner(), body.executable_id, body.replicas, name=body.name, share=body.share
    )
    return _out(registry, who, deployment)


@router.get("", response_model=list[DeploymentOut], summary="List deployments")
def list_deployments(registry: Reg, who: Authed) -> list[DeploymentOut]:
    return [_out(registry, who, d) for d in registry.list_deployments(who.scope)]


@router.get("/{deployment_id}", response_model=DeploymentOut, summary="A deployment and its live replicas")
def get(deployment_id: Id, registry: Reg, who: Authed) -> DeploymentOut:
    return _out(registry, who, _deployment(registry, who, deployment_id))


@router.patch("/{deployment_id}", response_model=DeploymentOut, summary="Scale a deployment", dependencies=WAKES_POOL)
def scale(deployment_id: Id, body: DeploymentScale, registry: Reg, who: Authed) -> DeploymentOut:
    return _out(registry, who, registry.scale_deployment(who.scope, deployment_id, body.replicas))


@router.delete(
    "/{deployment_id}",
    response_model=DeploymentOut,
    summary="Delete a deployment; its replicas stop",
    dependencies=WAKES_POOL,
)
def delete(deployment_id: Id, request: Request, registry: Reg, who: Authed) -> DeploymentOut:
    deployment = registry.delete_deployment(who.scope, deployment_id)
    for host in list(request.app.state.replica_hosts):  # a request after this answer gets 404, not a stopping replica
        host.retire(deployment_id)
    return _out(registry, who, deployment)


@router.post(
    "/{deployment_id}/infer",
    response_class=Response,
    openapi_extra=INFER_BODY,
    responses={
        200: {"content": {tensors.MEDIA_TYPE: {"schema": BINARY}}, "description": "the outputs"},
        429: {
            "model": ErrorOut,
            "description": "the tenant's or the deployment's requests are at their limits "
            "(running and waiting); Retry-After says when to try again",
        },
        503: {"description": "no replica became ready within `wait` seconds"},
    },
    summary="Run one request on a ready replica",
)
async def infer(
    deployment_id: Id,
    request: Request,
    who: Authed,
    wait: Annotated[float, Query(ge=0, le=300, description="seconds to wait for a ready replica")] = 30.0,
) -> Response:
    registry, hosts = request.app.state.registry, request.app.state.replica_hosts
    admission = request.app.state.admission
    owner = owner_of(hosts, deployment_id)
    if not owner_allows(hosts, deployment_id, who.token):  # not (yet) served here, or another tenant's
        owner = (await run_in_threadpool(_deployment, registry, who, deployment_id)).tenant_id
    try:
        async with admission.slot(
            owner, deployment_id, ready_replicas(hosts, deployment_id), expected_s(hosts, deployment_id)
        ):
            return await _serve(request, registry, hosts, who, deployment_id, wait, admission.executor)
    except Busy as exc:
        raise HTTPException(429, str(exc), headers=exc.headers) from None


async def _serve(request: Request, registry, hosts, who, deployment_id: int, wait: float, executor) -> Response:
    feeds = await _feeds(request)
    deadline, checked = time.monotonic() + wait, 0.0
    while True:
        host = serving(hosts, deployment_id)
        if host is not None:
            try:
                outputs = await run_on(host, deployment_id, feeds, executor)
                break
            except NoReplica:  # its last replica here stopped between the two calls
                continue
            except HamrError as exc:  # wrong inputs (InputError), or a kernel refusing them (KernelError)
                raise HTTPException(400, one_line(exc)) from None
        if time.monotonic() - checked > RECHECK_S:  # waiting: a deployment deleted meanwhile is 404 at once
            await run_in_threadpool(_deployment, registry, who, deployment_id)
            checked = time.monotonic()
        if time.monotonic() >= deadline:
            raise HTTPException(503, await run_in_threadpool(_not_ready, registry, who, deployment_id, wait))
        await asyncio.sleep(POLL_S)
    return Response(tensors.encode(outputs), media_type=tensors.MEDIA_TYPE)


async def _feeds(request: Request) -> dict:
    if is_multipart(request):
        return (await read_fields_and_arrays(request, None, "input"))[1]
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != tensors.MEDIA_TYPE:
        raise HTTPException(
            415, f"send the inputs as {tensors.MEDIA_TYPE} or multipart/form-data, not '{media or 'none'}'"
        )
    try:
        return tensors.decode(await request.body())
    except tensors.TensorsError as exc:
        raise HTTPException(400, one_line(exc)) from None


def _not_ready(registry, who, deployment_id: int, wait: float) -> str:
    deployment = _deployment(registry, who, deployment_id)
    replicas = registry.list_replicas(who.scope, deployment_id)
    states = ", ".join(f"{r.state} on {r.kind} {r.architecture}" for r in replicas) or "none placed"
    return (
        f"deployment {deployment_id} has no ready replica after {wait:g} s "
        f"(wants {deployment.replicas}; live: {states})"
    )
