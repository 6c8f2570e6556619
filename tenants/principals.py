"""The authenticated caller: who, in which tenant, with which roles over which scopes."""

from __future__ import annotations

from dataclasses import dataclass

from tenants.context import TenantContext, city_scope, scope_is_within
from tenants.db import Database
from tenants.roles import Role
from tenants.tokens import Claims


def resident_scope(tenant_id: int) -> str:
    return f"{city_scope(tenant_id)}.r0"


class UnknownTenant(Exception):
    pass


class ScopeOutsideTenant(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    tenant_code: str
    tenant_id: int
    scopes: tuple[str, ...]
    roles: frozenset[Role]

    @property
    def context(self) -> TenantContext:
        if self.roles == {Role.RESIDENT}:
            # A resident sees their own rows (owner_principal), never a territory's, whatever the
            # token's scopes say: their transaction gets a scope under the city that holds no rows.
            return TenantContext(self.tenant_id, (resident_scope(self.tenant_id),), self.sub)
        return TenantContext(self.tenant_id, self.scopes, self.sub)

    def has_any_role(self, *roles: Role) -> bool:
        return not self.roles.isdisjoint(roles)


class TenantDirectory:
    """Resolves tenant codes to ids, caching the answers (tenant codes never change)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._ids: dict[str, int] = {}

    async def tenant_id(self, code: str) -> int | None:
        if code not in self._ids:
            found = await self._database.tenant_id_for(code)
            if found is None:
                return None
            self._ids[code] = found
        return self._ids[code]

    async def principal_for(self, claims: Claims) -> Principal:
        tenant_id = await self.tenant_id(claims.tenant)
        if tenant_id is None:
            raise UnknownTenant(f"tenant {claims.tenant!r} does not exist")
        root = city_scope(tenant_id)
        outside = [scope for scope in claims.scopes if not scope_is_within(scope, root)]
        if outside:
            raise ScopeOutsideTenant(f"scope {outside[0]} lies outside tenant {claims.tenant!r}")
        return Principal(
            sub=claims.sub,
            tenant_code=claims.tenant,
            tenant_id=tenant_id,
            scopes=claims.scopes,
            roles=frozenset(Role(role) for role in claims.roles),
        )
