"""Bearer-token authentication shared by every HTTP entry point (/graphql, /tiles)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from schema.context import ApiConfig
from tenants.principals import Principal, ScopeOutsideTenant, UnknownTenant
from tenants.tokens import TokenError


class AuthenticationFailed(Exception):
    """A request whose credentials must be refused: the HTTP status and a one-line reason."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


async def authenticate(config: ApiConfig, connection: HTTPConnection) -> Principal | None:
    """The caller named by the `Authorization: Bearer <token>` header; None when there is no header.

    A malformed header, an invalid token or an unknown tenant is a 401; a scope outside the token's
    tenant is a 403.
    """
    header = connection.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(401, "the Authorization header must be 'Bearer <token>'")
    try:
        claims = config.tokens.verify(token.strip())
        return await config.directory.principal_for(claims)
    except TokenError as error:
        raise AuthenticationFailed(401, str(error)) from None
    except UnknownTenant as error:
        raise AuthenticationFailed(401, str(error)) from None
    except ScopeOutsideTenant as error:
        raise AuthenticationFailed(403, str(error)) from None
