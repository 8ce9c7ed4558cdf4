"""/v1/tenants (admin): create a tenant, with its first token shown once; list them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from hamr.pool.service.auth import Admin, Reg
from hamr.pool.service.schemas import TenantCreated, TenantIn, TenantOut, tenant_out
from hamr.pool.service.strict_json import StrictJsonRoute

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], route_class=StrictJsonRoute)


@router.get("", response_model=list[TenantOut], summary="List tenants")
def list_tenants(registry: Reg, who: Admin) -> list[TenantOut]:
    return [tenant_out(t) for t in registry.list_tenants()]


@router.post("", response_model=TenantCreated, status_code=201, summary="Create a tenant and its first token")
def create_tenant(body: TenantIn, registry: Reg, who: Admin) -> TenantCreated:
    if registry.get_tenant_by_name(body.name) is not None:
        raise HTTPException(409, f"tenant '{body.name}' already exists")
    tenant = registry.create_tenant(**body.model_dump())
    token, _ = registry.create_token(tenant.id, label="created with the tenant")
    return TenantCreated(tenant=tenant_out(tenant), token=token)
