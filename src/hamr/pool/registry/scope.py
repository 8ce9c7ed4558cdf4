"""Tenant scope: every registry call that touches a tenant's objects takes one.

A tenant id limits the call to that tenant's rows. `ANY_TENANT` is the explicit, operator-only
scope (the scheduler, the node agents, admin tokens). `None` is refused, so a forgotten tenant can
never silently mean "everyone".
"""

from __future__ import annotations

from typing import Final, TypeAlias


class _AnyTenant:
    def __repr__(self) -> str:
        return "ANY_TENANT"


ANY_TENANT: Final = _AnyTenant()
Scope: TypeAlias = "int | _AnyTenant"  # a tenant id, or ANY_TENANT


def scoped(stmt, column, tenant):
    """`stmt` filtered to `tenant`'s rows (`column` is the tenant id column)."""
    if tenant is ANY_TENANT:
        return stmt
    return stmt.where(column == require_tenant(tenant))


def require_tenant(tenant) -> int:
    """The tenant id itself, for calls that create a tenant's objects (ANY_TENANT makes no sense there)."""
    if tenant is None or tenant is ANY_TENANT or isinstance(tenant, bool) or not isinstance(tenant, int):
        raise TypeError(f"a tenant id (int) is required here, got {tenant!r}")
    return tenant
