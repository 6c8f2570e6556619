"""The tenant context every transaction carries, validated before it reaches SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass

SCOPE_PATTERN = re.compile(r"^[a-z][0-9]{1,18}(\.[a-z][0-9]{1,18}){0,7}$")
ROLE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TENANT_CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
PRINCIPAL_PATTERN = re.compile(r"^[a-z]{2,16}:[A-Za-z0-9_.@-]{1,64}$")
MAX_TENANT_ID = 2**63 - 1
# Principal kinds the platform names itself (system contexts, callers known by phone, intake channels,
# Open311 keys): no token may claim one. Add a kind here when code starts acting under a new one.
RESERVED_PRINCIPAL_KINDS = frozenset({"system", "phone", "channel", "apikey", "ratingcode"})


class InvalidContext(ValueError):
    """A tenant id, scope path or principal that must never be written into SQL."""


def city_scope(tenant_id: int) -> str:
    return f"c{tenant_id}"


def validate_scope(path: str) -> str:
    if not isinstance(path, str) or not SCOPE_PATTERN.fullmatch(path):
        raise InvalidContext(f"scope {path!r} is not a hierarchy path such as c1.d3.s12.t5")
    return path


def is_reserved_principal(principal: str) -> bool:
    return principal.partition(":")[0] in RESERVED_PRINCIPAL_KINDS


def scope_is_within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor + ".")


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Who is asking, in which tenant, over which parts of its hierarchy."""

    tenant_id: int
    scopes: tuple[str, ...]
    principal: str

    def __post_init__(self) -> None:
        if isinstance(self.tenant_id, bool) or not isinstance(self.tenant_id, int):
            raise InvalidContext("tenant id must be an integer")
        if not 0 < self.tenant_id <= MAX_TENANT_ID:
            raise InvalidContext("tenant id is out of range")
        if not self.scopes:
            raise InvalidContext("a context needs at least one scope")
        root = city_scope(self.tenant_id)
        for scope in self.scopes:
            validate_scope(scope)
            if not scope_is_within(scope, root):
                raise InvalidContext(f"scope {scope} lies outside tenant {self.tenant_id}")
        if not isinstance(self.principal, str) or not PRINCIPAL_PATTERN.fullmatch(self.principal):
            raise InvalidContext(f"principal {self.principal!r} is not of the form kind:name")

    @classmethod
    def whole_tenant(cls, tenant_id: int, principal: str) -> TenantContext:
        return cls(tenant_id, (city_scope(tenant_id),), principal)

    @property
    def is_whole_tenant(self) -> bool:
        return self.scopes == (city_scope(self.tenant_id),)

    def set_local_statement(self, tenant_role: str | None = None) -> str:
        """The SET LOCAL statements for this context; with `tenant_role`, a whole-tenant context also
        switches to that role (see tenants.rls).

        SET cannot take bind parameters, so the values are interpolated; __post_init__ has already
        restricted them to digits, letters, dots, colons and a few safe punctuation marks.
        """
        scopes = "{" + ",".join(self.scopes) + "}"
        statement = (
            f"SET LOCAL app.tenant_id = '{self.tenant_id}'; "
            f"SET LOCAL app.scopes = '{scopes}'; "
            f"SET LOCAL app.principal = '{self.principal}'"
        )
        if tenant_role is not None and self.is_whole_tenant:
            if not ROLE_PATTERN.fullmatch(tenant_role):
                raise InvalidContext(f"role {tenant_role!r} is not a plain identifier")
            statement += f"; SET LOCAL ROLE {tenant_role}"
        return statement
