from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry

from schema.context import Info
from schema.errors import ErrorCode, InvalidCredentialsError, InvalidInputError, invalid_input
from schema.identity.types import LoginPayload, Me
from tenants.identity import authenticate

LoginResult = Annotated[
    LoginPayload | InvalidCredentialsError | InvalidInputError, strawberry.union("LoginResult")
]
WRONG = "the tenant, username or password is wrong"


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(description="Exchange a username and password for a bearer token.")
    async def login(self, info: Info, tenant: str, username: str, password: str) -> LoginResult:
        if not tenant or not username or not password or len(password) > 1024 or len(username) > 64:
            return invalid_input("tenant, username and password are all required")
        config = info.context.config
        tenant_id = await config.directory.tenant_id(tenant)
        identity = await authenticate(config.database, tenant_id, username, password) if tenant_id else None
        if identity is None:
            return InvalidCredentialsError(code=ErrorCode.INVALID_CREDENTIALS, message=WRONG)
        now = datetime.now(UTC)
        token = config.tokens.issue(
            sub=identity.sub,
            tenant=tenant,
            scopes=identity.scopes,
            roles=identity.roles,
            ttl=config.token_ttl,
            now=now,
        )
        me = Me(sub=identity.sub, tenant=tenant, roles=sorted(identity.roles), scopes=list(identity.scopes))
        return LoginPayload(token=token, expires_at=now + config.token_ttl, me=me)
