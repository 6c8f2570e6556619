from __future__ import annotations

import strawberry
from graphql import GraphQLError

from schema.context import Info
from schema.deliberation.types import Deliberation, DeliberationState, deliberation_of, reading
from schema.permissions import SIGNED_IN
from schema.relay import MAX_PAGE_SIZE, BadGlobalId, decode_id
from services.deliberation import repository


@strawberry.type
class DeliberationQuery:
    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="A deliberation: staff see their scope, residents the topics put to their home.",
    )
    async def deliberation(self, info: Info, id: strawberry.ID) -> Deliberation | None:
        try:
            _, key = decode_id(id, "Deliberation")
        except BadGlobalId as error:
            raise GraphQLError(str(error), extensions={"code": "INVALID_INPUT"}) from None
        principal = info.context.require_principal()
        async with reading(info) as session:
            row = await repository.get(session, principal.tenant_id, key)
        return deliberation_of(row) if row is not None else None

    @strawberry.field(
        permission_classes=SIGNED_IN, description="Deliberations the caller may see, latest first."
    )
    async def deliberations(
        self, info: Info, states: list[DeliberationState] | None = None, first: int = 50
    ) -> list[Deliberation]:
        if not 0 <= first <= MAX_PAGE_SIZE:
            raise GraphQLError(
                f"first must be between 0 and {MAX_PAGE_SIZE}", extensions={"code": "INVALID_INPUT"}
            )
        principal = info.context.require_principal()
        async with reading(info) as session:
            rows = await repository.listing(
                session, principal.tenant_id, states=[s.value for s in states or []], limit=first
            )
        return [deliberation_of(row) for row in rows]
