"""Authorization, declared on fields: who must be signed in, and which roles may change what."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission

from schema.context import Info
from schema.errors import ErrorCode, ForbiddenError
from tenants.context import city_scope
from tenants.roles import Role

SIGN_IN_FIRST = "sign in first: send 'Authorization: Bearer <token>'"


def _unauthenticated(info: Info) -> None:
    info.context.response.status_code = 401
    info.context.response.headers["WWW-Authenticate"] = 'Bearer realm="liaison-grid"'


class IsAuthenticated(BasePermission):
    message = SIGN_IN_FIRST
    error_extensions = {"code": "UNAUTHENTICATED"}  # noqa: RUF012 (strawberry reads this class attribute)

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if info.context.principal is not None:
            return True
        _unauthenticated(info)
        return False


class RequireRoles(FieldExtension):
    """For mutations: a signed-in caller without one of `roles` gets a FORBIDDEN error payload."""

    def __init__(self, *roles: Role) -> None:
        super().__init__()
        self.roles = roles

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        principal = info.context.principal
        if principal is None:
            _unauthenticated(info)
            raise GraphQLError(SIGN_IN_FIRST, extensions={"code": "UNAUTHENTICATED"})
        if not principal.has_any_role(*self.roles):
            wanted = " or ".join(role.value for role in self.roles)
            return ForbiddenError(code=ErrorCode.FORBIDDEN, message=f"only a {wanted} may do this")
        return await next_(source, info, **kwargs)


class RequireWholeCity(FieldExtension):
    """For mutations of tenant-wide rows (settings, categories, the calendar): the caller's scopes must
    include the whole city; a token bound to a district gets a FORBIDDEN error payload. (Row-level security
    refuses the write too; this answers it clearly.)"""

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        principal = info.context.principal
        if principal is not None and city_scope(principal.tenant_id) not in principal.scopes:
            return ForbiddenError(
                code=ErrorCode.FORBIDDEN,
                message="this changes the whole city's configuration: it needs a token for the whole city",
            )
        return await next_(source, info, **kwargs)


SIGNED_IN: list[type[BasePermission]] = [IsAuthenticated]
