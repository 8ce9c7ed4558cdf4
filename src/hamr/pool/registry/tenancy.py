"""Tenants, their quotas, and API tokens (stored only as sha256 hashes)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hamr.pool.registry import tokens
from hamr.pool.registry.errors import NotFound, RegistryError
from hamr.pool.registry.models import ApiToken, Tenant, utcnow
from hamr.pool.registry.scope import Scope, require_tenant, scoped

QUOTA_FIELDS = (
    "max_devices",
    "max_running_jobs",
    "max_priority",
    "max_queued_jobs",
    "max_stored_bytes",
    "max_inflight_requests",
    "max_queued_requests",
    "weight",
)
NOT_NULL = ("max_priority", "weight")  # the other fields take None: no limit


class Tenancy:
    def create_tenant(self, name: str, **quota: int | None) -> Tenant:
        """A tenant with the pool's default limits (models.DEFAULT_*), changed by `quota` (QUOTA_FIELDS)."""
        _check_quota_fields(quota)
        try:
            with self.writing() as session:
                tenant = Tenant(name=name, **quota)
                session.add(tenant)
                session.flush()
                self._event(session, "tenant.created", f"tenant:{name}", tenant.id)
        except IntegrityError:
            raise RegistryError(f"tenant '{name}' already exists") from None
        return tenant

    def get_tenant(self, tenant_id: int) -> Tenant | None:
        with self.reading() as session:
            return session.get(Tenant, require_tenant(tenant_id))

    def get_tenant_by_name(self, name: str) -> Tenant | None:
        return self._one(select(Tenant).where(Tenant.name == name))

    def list_tenants(self) -> list[Tenant]:
        return self._all(select(Tenant).order_by(Tenant.id))

    def set_quota(self, tenant_id: int, **quota: int | None) -> Tenant:
        """Change any of QUOTA_FIELDS (None lifts a max_* limit; max_priority and weight take a number)."""
        _check_quota_fields(quota)
        with self.writing() as session:
            row = session.get(Tenant, require_tenant(tenant_id), with_for_update=True)
            if row is None:
                raise NotFound(f"tenant {tenant_id} not found")
            for field, value in quota.items():
                setattr(row, field, value)
            self._event(session, "tenant.quota", f"tenant:{row.name}", row.id, **quota)
        return row

    # Tokens: the plaintext exists only in create_token's return value.

    def create_token(
        self, tenant_id: int | None, admin: bool = False, label: str = "", node: str | None = None
    ) -> tuple[str, ApiToken]:
        """A new token for the tenant (None: an admin token of no tenant), or, with `node`, the agent token
        of that node (no tenant, not admin). Returns (plaintext, row), once."""
        if node is not None and (tenant_id is not None or admin or not 0 < len(node) <= 255):
            raise RegistryError(
                "an agent token names a node (1 to 255 characters) and has no tenant and no admin scope"
            )
        if tenant_id is None and not admin and node is None:
            raise RegistryError("a token without a tenant must be an admin token")
        owner = None if tenant_id is None else require_tenant(tenant_id)
        plaintext = tokens.new_token()
        with self.writing() as session:
            if owner is not None and session.get(Tenant, owner) is None:
                raise NotFound(f"tenant {owner} not found")
            row = ApiToken(
                token_hash=tokens.hash_token(plaintext), tenant_id=owner, admin=admin, label=label, node=node
            )
            session.add(row)
            session.flush()
            self._event(
                session,
                "token.created",
                f"token:{row.id}",
                owner,
                admin=admin,
                label=label,
                **({"node": node} if node else {}),
            )
        return plaintext, row

    def authenticate(self, plaintext: str) -> ApiToken | None:
        """The token's row when it exists and is not revoked, else None."""
        if not tokens.looks_like_token(plaintext):
            return None
        stmt = select(ApiToken).where(
            ApiToken.token_hash == tokens.hash_token(plaintext), ApiToken.revoked_at.is_(None)
        )
        return self._one(stmt)

    def list_tokens(self, tenant: Scope) -> list[ApiToken]:
        return self._all(scoped(select(ApiToken), ApiToken.tenant_id, tenant).order_by(ApiToken.id))

    def revoke_token(self, tenant: Scope, token_id: int) -> ApiToken:
        """Revoke a token (idempotent). A tenant revokes only its own; ANY_TENANT any."""
        stmt = scoped(select(ApiToken), ApiToken.tenant_id, tenant).where(ApiToken.id == token_id).with_for_update()
        with self.writing() as session:
            row = session.scalar(stmt)
            if row is None:
                raise NotFound(f"token {token_id} not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                self._event(session, "token.revoked", f"token:{row.id}", row.tenant_id)
        return row


def _check_quota_fields(quota: dict) -> None:
    unknown = set(quota) - set(QUOTA_FIELDS)
    if unknown:
        raise RegistryError(f"unknown quota field(s) {', '.join(sorted(unknown))} (known: {', '.join(QUOTA_FIELDS)})")
    for field in NOT_NULL:
        if field in quota and quota[field] is None:
            raise RegistryError(f"{field} takes a number, not null")
