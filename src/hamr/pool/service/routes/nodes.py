"""/v1/nodes: the node agents' heartbeats and the list of nodes (admin)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from hamr.pool.service.auth import Admin, Reg
from hamr.pool.service.schemas import Heartbeat, NodeOut, node_out
from hamr.pool.service.strict_json import StrictJsonRoute

router = APIRouter(prefix="/v1/nodes", tags=["nodes"], route_class=StrictJsonRoute)


@router.get("", response_model=list[NodeOut], summary="List nodes")
def list_nodes(registry: Reg, who: Admin) -> list[NodeOut]:
    return [node_out(n) for n in registry.list_nodes()]


@router.post("/heartbeat", response_model=NodeOut, summary="A node agent's heartbeat: the node and its devices")
async def heartbeat(body: Heartbeat, registry: Reg, who: Admin) -> NodeOut:
    reports = [d.report() for d in body.devices]
    node = await run_in_threadpool(registry.heartbeat, body.node, reports, address=body.address, labels=body.labels)
    return node_out(node)
