"""/v1/tenants (admin): create a tenant, with its first token shown once; list them; change their limits."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from hamr.pool.service.auth import Admin, Reg
from hamr.pool.service.schemas import Id, TenantCreated, TenantIn, TenantOut, TenantPatch, tenant_out
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


@router.patch(
    "/{tenant_id}", response_model=TenantOut, summary="Change a tenant's quotas, limits, max_priority or weight"
)
def change_tenant(tenant_id: Id, body: TenantPatch, request: Request, registry: Reg, who: Admin) -> TenantOut:
    tenant = registry.set_quota(tenant_id, **body.model_dump(exclude_unset=True))
    request.app.state.admission.forget(tenant_id)  # this process's requests see the new limits at once
    return tenant_out(tenant)
