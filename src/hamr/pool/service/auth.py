"""Bearer tokens: `Authorization: Bearer <token>`, checked with `Registry.authenticate`.

A missing, unknown or revoked token is 401; a tenant token on an admin route is 403. An admin
token's scope is ANY_TENANT; a tenant token's is its tenant, so another tenant's objects read as
missing (404), exactly as ids that do not exist. An agent token (`Registry.create_token(None,
node=NAME)`) serves only node NAME's agent: the `/v1/agents/NAME/...` routes, and downloads of
the executables and job inputs of work sent to NAME; anywhere else it is 403.

A token found valid is remembered (by its sha256) for TOKEN_CACHE_S seconds, so a request does
not pay a database read for it; a token revoked in the registry stops working within that time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from hamr.pool.registry import ANY_TENANT, ApiToken, NotFound, Registry
from hamr.pool.registry.tokens import hash_token

TOKEN_CACHE_S = 2.0

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


class TokenCache:
    """Valid tokens' rows by the token's sha256, each kept for `ttl_s` seconds."""

    def __init__(self, ttl_s: float = TOKEN_CACHE_S):
        self.ttl_s = ttl_s
        self._rows: dict[str, tuple[ApiToken, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> ApiToken | None:
        hit = self._rows.get(digest)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, digest: str, token: ApiToken) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._rows) > 10_000:
                self._rows = {k: v for k, v in self._rows.items() if v[1] >= now}
            self._rows[digest] = (token, now + self.ttl_s)


async def registry_of(request: Request) -> Registry:  # async: no worker thread for a lookup
    return request.app.state.registry


async def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> ApiToken:
    if credentials is None:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer hamr_...)", headers=CHALLENGE)
    cache: TokenCache = request.app.state.tokens
    digest = hash_token(credentials.credentials)
    token = cache.get(digest)
    if token is None:
        token = await run_in_threadpool(request.app.state.registry.authenticate, credentials.credentials)
        if token is None:
            raise HTTPException(401, "invalid or revoked token", headers=CHALLENGE)
        cache.put(digest, token)
    return token


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """A tenant's or an admin's token; an agent token is 403 here (it serves only its node's agent routes)."""
    token = await _token(request, credentials)
    if token.node is not None:
        raise HTTPException(
            403, f"this is the agent token of node {token.node}: it serves only /v1/agents/{token.node}/..."
        )
    return Caller(token)


async def caller_or_agent(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """Any valid token; a route that takes agent tokens checks what their node may read."""
    return Caller(await _token(request, credentials))


async def node_agent(node: str, who: Annotated[Caller, Depends(caller_or_agent)]) -> Caller:
    """An admin token, or the agent token of the path's `node`."""
    if who.admin or who.token.node == node:
        return who
    if who.token.node is not None:
        raise HTTPException(403, f"this is the agent token of node {who.token.node}, not of node {node}")
    raise HTTPException(403, f"this route needs an admin token or the agent token of node {node}")


def read_scope(request: Request, who: Caller, job: int | None = None, executable: int | None = None):
    """The scope `who` reads a job's inputs or an executable with: a tenant's or admin's own; an agent
    token's is every tenant's, for work now sent to its node only (anything else reads as missing)."""
    if who.token.node is None:
        return who.scope
    remote = request.app.state.remote
    node = remote.nodes.get(who.token.node) if remote is not None else None
    if node is None or not node.sent(job=job, executable=executable):
        raise NotFound(f"job {job} not found" if job is not None else f"executable {executable} not found")
    return ANY_TENANT


def admin(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if not who.admin:
        raise HTTPException(403, "this route needs an admin token")
    return who


Authed = Annotated[Caller, Depends(caller)]
AuthedOrAgent = Annotated[Caller, Depends(caller_or_agent)]
NodeAgent = Annotated[Caller, Depends(node_agent)]
Admin = Annotated[Caller, Depends(admin)]
Reg = Annotated[Registry, Depends(registry_of)]
