from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from graphql import GraphQLError

from schema.context import Info
from schema.mediation.types import (
    MediationCase,
    MediationState,
    MediationStats,
    ScopeStats,
    case_of,
    level_stats_of,
)
from schema.permissions import SIGNED_IN
from schema.relay import MAX_PAGE_SIZE, BadGlobalId, decode_id
from services.errors import DomainError
from services.hierarchy import repository as hierarchy
from services.hierarchy.repository import Level
from services.mediation import repository
from services.mediation import stats as rates
from tenants.context import city_scope

NODE_LEVELS = {"District": Level.DISTRICT, "Street": Level.STREET, "Station": Level.STATION}


def _invalid(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "INVALID_INPUT"})


@strawberry.type
class MediationQuery:
    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="A mediation case: staff see their scope, the applicant theirs.",
    )
    async def mediation_case(self, info: Info, id: strawberry.ID) -> MediationCase | None:
        try:
            _, key = decode_id(id, "MediationCase")
        except BadGlobalId as error:
            raise _invalid(str(error)) from None
        principal = info.context.require_principal()
        async with info.context.db() as session:
            row = await repository.get(session, principal.tenant_id, key)
        return case_of(row) if row is not None else None

    @strawberry.field(
        permission_classes=SIGNED_IN, description="Mediation cases the caller may see, latest first."
    )
    async def mediation_cases(
        self, info: Info, states: list[MediationState] | None = None, first: int = 50
    ) -> list[MediationCase]:
        if not 0 <= first <= MAX_PAGE_SIZE:
            raise _invalid(f"first must be between 0 and {MAX_PAGE_SIZE}")
        principal = info.context.require_principal()
        async with info.context.db() as session:
            rows = await repository.listing(
                session, principal.tenant_id, states=[s.value for s in states or []], limit=first
            )
        return [case_of(row) for row in rows]

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Success rates per level and per station of the levels started in [from, to), inside "
        "a node (the city when omitted) and the caller's scope.",
    )
    async def mediation_stats(
        self,
        info: Info,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        node_id: strawberry.ID | None = None,
    ) -> MediationStats:
        principal = info.context.require_principal()
        async with info.context.db() as session:
            scope = city_scope(principal.tenant_id)
            if node_id is not None:
                try:
                    type_name, key = decode_id(node_id, *NODE_LEVELS)
                except BadGlobalId as error:
                    raise _invalid(str(error)) from None
                node = (
                    await hierarchy.by_ids(session, NODE_LEVELS[type_name], principal.tenant_id, [key])
                ).get(key)
                if node is None:
                    raise GraphQLError(
                        f"no {type_name.lower()} {node_id} you may see", extensions={"code": "NOT_FOUND"}
                    )
                scope = str(node.scope)
            try:
                stats = await rates.stats(session, principal.tenant_id, scope, from_, to)
            except DomainError as error:
                raise _invalid(error.message) from None
        return MediationStats(
            by_level=[level_stats_of(row) for row in stats.by_level],
            by_scope=[
                ScopeStats(scope=s.scope, name=s.name, levels=[level_stats_of(row) for row in s.levels])
                for s in stats.by_scope
            ],
        )
