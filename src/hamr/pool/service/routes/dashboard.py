"""The dashboard: its page at `/` (public: one HTML file, a script and a style sheet, shipped in
service/dashboard/), and `/v1/dashboard`, what the page shows beyond the API's lists, in the caller's scope.

The page logs in with a pasted token, kept in the tab's sessionStorage and sent as the API's
Authorization header, never in a URL; it polls (an EventSource could not send the header).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from hamr.pool.service.auth import Authed, Reg
from hamr.pool.service.dashboard_data import History, newest_jobs, node_fragments
from hamr.pool.service.schemas import JobOut, PlacementOut, job_out
from hamr.pool.service.strict_json import StrictJsonRoute

router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"], route_class=StrictJsonRoute)
page = APIRouter(include_in_schema=False)

FILES = {"index.html": "text/html", "dashboard.js": "text/javascript", "dashboard.css": "text/css"}
PAGE_HEADERS = {
    # Only the pool's own files run, and the page talks only to its pool: an injected script could read the token.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class DeviceSeries(BaseModel):
    uuid: str
    t: list[float] = Field(description="sample times, seconds since the epoch, oldest first")
    utilisation: list[float | None] = Field(description="0..1 as the device's driver last reported it; null: unknown")
    memory_used: list[int | None] = Field(description="bytes; null where the driver cannot tell")
    memory_total: int


class RequestRate(BaseModel):
    deployment_id: int
    t: list[float] = Field(description="sample times, seconds since the epoch, oldest first")
    per_s: list[float] = Field(description="requests answered per second since the sample before, by this process")


class DashboardJob(JobOut):
    placements: list[PlacementOut]
    reason: str | None = Field(description="why it last waited or was requeued")


class DashboardOut(BaseModel):
    admin: bool
    tenant: str | None = Field(description="the caller's tenant (null: an admin token of no tenant)")
    now: float = Field(description="the server's clock, seconds since the epoch")
    sample_every_s: float
    devices: list[DeviceSeries] = Field(description="admins: every device; tenants: the schedulable ones")
    stranded: dict[str, float] = Field(
        description="node -> free share, in devices, left on its partly allocated devices (admins only)"
    )
    expected_fragment: dict[str, float] = Field(
        description="node -> FGD's expected free share, in devices, that the pool's requests could not use "
        "(admins only)"
    )
    request_rates: list[RequestRate] = Field(description="the caller's deployments")
    jobs: list[DashboardJob] = Field(description="the caller's newest jobs, newest first")


@router.get("", response_model=DashboardOut, summary="The dashboard's data: history, fragmentation, newest jobs")
def snapshot(request: Request, registry: Reg, who: Authed) -> DashboardOut:
    history: History = request.app.state.history
    history.refresh(registry, request.app.state.replica_hosts)
    tenant = registry.get_tenant(who.token.tenant_id) if who.token.tenant_id is not None else None
    devices = registry.list_devices(schedulable=not who.admin)
    series = history.device_series(d.uuid for d in devices)
    stranded, expected = node_fragments(registry) if who.admin else ({}, {})
    rates = history.request_rates(d.id for d in registry.list_deployments(who.scope))
    return DashboardOut(
        admin=who.admin,
        tenant=tenant.name if tenant is not None else None,
        now=history.clock(),
        sample_every_s=history.every_s,
        devices=[
            DeviceSeries(uuid=uuid, t=t, utilisation=used, memory_used=memory, memory_total=total)
            for uuid, (t, used, memory, total) in series.items()
        ],
        stranded=stranded,
        expected_fragment=expected,
        request_rates=[RequestRate(deployment_id=d, t=t, per_s=per_s) for d, (t, per_s) in sorted(rates.items())],
        jobs=[
            DashboardJob(
                **job_out(details.job).model_dump(),
                placements=[
                    PlacementOut(attempt=attempt, device=uuid, reason=reason, created_at=at)
                    for attempt, uuid, reason, at in details.placements
                ],
                reason=details.reason,
            )
            for details in newest_jobs(registry, who.scope)
        ],
    )


@cache
def _file(name: str) -> bytes:
    return resources.files("hamr.pool.service").joinpath("dashboard", name).read_bytes()


def _page_file(name: str) -> Response:
    return Response(_file(name), media_type=f"{FILES[name]}; charset=utf-8", headers=PAGE_HEADERS)


@page.get("/")
def index() -> Response:
    return _page_file("index.html")


@page.get("/dashboard/{name}")
def asset(name: str) -> Response:
    if name not in FILES or name == "index.html":
        raise HTTPException(404, f"the dashboard has no file '{name}' (it has dashboard.js and dashboard.css)")
    return _page_file(name)
