"""/v1/executables: upload a .hamr (raw body or multipart part `file`), verified by the registry; list, get, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from hamr.pool.registry import NotFound
from hamr.pool.service.auth import Authed, AuthedOrAgent, Reg, read_scope
from hamr.pool.service.downloads import blob_response
from hamr.pool.service.schemas import ExecutableOut, Id, executable_out
from hamr.pool.service.strict_json import StrictJsonRoute
from hamr.pool.service.uploads import BINARY, request_body, stage_file_or_body

router = APIRouter(prefix="/v1/executables", tags=["executables"], route_class=StrictJsonRoute)

UPLOAD_BODY = request_body(
    "the .hamr file: the raw body, or the multipart part `file`",
    {
        "application/octet-stream": BINARY,
        "multipart/form-data": {"type": "object", "required": ["file"], "properties": {"file": BINARY}},
    },
)


@router.post(
    "", response_model=ExecutableOut, status_code=201, openapi_extra=UPLOAD_BODY, summary="Upload a .hamr executable"
)
async def upload(
    request: Request, registry: Reg, who: Authed, name: Annotated[str | None, Query(max_length=255)] = None
) -> ExecutableOut:
    owner = who.owner()
    staged = await stage_file_or_body(request, "file", registry.blobs)
    try:
        record = await run_in_threadpool(registry.upload_executable, owner, staged, name or None)
    finally:
        staged.discard()  # nothing once committed
    return executable_out(record)


@router.get("", response_model=list[ExecutableOut], summary="List executables")
def list_executables(registry: Reg, who: Authed) -> list[ExecutableOut]:
    return [executable_out(r) for r in registry.list_executables(who.scope)]


@router.get("/{executable_id}", response_model=ExecutableOut, summary="An executable's metadata")
def get_executable(executable_id: Id, registry: Reg, who: Authed) -> ExecutableOut:
    record = registry.get_executable(who.scope, executable_id)
    if record is None:
        raise NotFound(f"executable {executable_id} not found")
    return executable_out(record)


@router.get(
    "/{executable_id}/file",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {"schema": BINARY}}, "description": "the .hamr bytes as uploaded"}
    },
    summary="Download an executable",
)
def download(executable_id: Id, request: Request, registry: Reg, who: AuthedOrAgent) -> Response:
    chunks = registry.executable_chunks(read_scope(request, who, executable=executable_id), executable_id)
    return blob_response(chunks, f"executable-{executable_id}.hamr")
