from __future__ import annotations

import strawberry

from schema.context import Info
from schema.identity.types import Me
from schema.permissions import SIGNED_IN


@strawberry.type
class IdentityQuery:
    @strawberry.field(permission_classes=SIGNED_IN)
    def me(self, info: Info) -> Me:
        principal = info.context.require_principal()
        return Me(
            sub=principal.sub,
            tenant=principal.tenant_code,
            roles=sorted(role.value for role in principal.roles),
            scopes=list(principal.scopes),
        )
