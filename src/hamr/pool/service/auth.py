"""Bearer tokens: `Authorization: Bearer <token>`, checked with `Registry.authenticate`.

A missing, unknown or revoked token is 401; a tenant token on an admin route is 403. An admin
token's scope is ANY_TENANT; a tenant token's is its tenant, so another tenant's objects read as
missing (404), exactly as ids that do not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hamr.pool.registry import ANY_TENANT, ApiToken, Registry

bearer = HTTPBearer(auto_error=False, description="an API token: `hamr_...` (admin or tenant)")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    token: ApiToken

    @property
    def admin(self) -> bool:
        return self.token.admin

    @property
    def scope(self):
        """What the registry's tenant-scoped calls take: ANY_TENANT for admins, else the tenant id."""
        return ANY_TENANT if self.token.admin else self.token.tenant_id

    def owner(self) -> int:
        """The tenant that new objects (executables, jobs) belong to."""
        if self.token.tenant_id is None:
            raise HTTPException(403, "this admin token has no tenant: upload and submit with a tenant's token")
        return self.token.tenant_id


def registry_of(request: Request) -> Registry:
    return request.app.state.registry


def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    if credentials is None:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer hamr_...)", headers=CHALLENGE)
    token = registry_of(request).authenticate(credentials.credentials)
    if token is None:
        raise HTTPException(401, "invalid or revoked token", headers=CHALLENGE)
    return Caller(token)


def admin(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if not who.admin:
        raise HTTPException(403, "this route needs an admin token")
    return who


Authed = Annotated[Caller, Depends(caller)]
Admin = Annotated[Caller, Depends(admin)]
Reg = Annotated[Registry, Depends(registry_of)]
